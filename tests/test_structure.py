"""The product's layers, read from its source: lib_lcm (pure) <- lib_lcm_webui (the WebUI glue) <- scripts/ (the
entry). No import cycle, no upward import, and modules and functions small enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE, GLUE = "lib_lcm", "lib_lcm_webui"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def product_files() -> dict[str, Path]:
    """{module name: file} for the product: both packages, the entry script and install.py."""
    files = {"install": ROOT / "install.py", "scripts.lcm_lora": ROOT / "scripts" / "lcm_lora.py"}
    for package in (PURE, GLUE):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def test_the_graph_sees_subpackages():
    assert "lib_lcm.weights.download" in product_files() and "lib_lcm.weights" in product_files()


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The product modules `path` imports, at any depth in the file (function-local imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def import_graph() -> dict[str, set[str]]:
    files = product_files()
    known = set(files)
    return {name: imports_of(path, known) - {name} for name, path in files.items()}


def test_the_graph_sees_both_layers():
    graph = import_graph()
    assert f"{GLUE}.samplers" in graph and f"{PURE}.sampling" in graph["lib_lcm_webui.samplers"]


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                raise AssertionError(f"import cycle: {' -> '.join([*path, name, target])}")
            if target not in state:
                visit(target, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_layers_import_only_downwards():
    graph = import_graph()
    for name, targets in graph.items():
        if in_package(name, PURE):
            assert not {t for t in targets if in_package(t, GLUE)}, f"{name} (pure) imports the glue"
        if in_package(name, GLUE) or name == "install":
            assert "scripts.lcm_lora" not in targets
    importers_of_glue = {name for name, targets in graph.items()
                         if not in_package(name, GLUE) and any(in_package(t, GLUE) for t in targets)}
    assert importers_of_glue == {"scripts.lcm_lora"}, "only the entry script imports the glue"


def test_the_glue_imports_the_host_at_module_top_never_inside_functions():
    for name, path in product_files().items():
        if not in_package(name, GLUE):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden = [sub for sub in ast.walk(node) if isinstance(sub, ast.ImportFrom)
                          and (sub.module or "").split(".")[0] in ("modules", "gradio", "lib_lcm_webui")]
                hidden = [sub for sub in hidden if not _is_feature_test(node)]
                assert not hidden, f"{name}.{node.name} imports {hidden[0].module} inside a function"


def _is_feature_test(function) -> bool:
    # compat's host look-ups that exist on some hosts only (Forge's classes) are imported where they are used.
    return function.name in ("cfg_denoiser_base", "forge_sampling")


@pytest.mark.parametrize("name", sorted(product_files()))
def test_modules_and_functions_stay_small(name):
    path = product_files()[name]
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{name} has over {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            code_lines = {line for stmt in body for line in range(stmt.lineno, stmt.end_lineno + 1)}
            comments = {i + 1 for i, text in enumerate(source.splitlines()) if text.strip().startswith("#")}
            assert len(code_lines - comments) <= MAX_FUNCTION_LINES, (
                f"{name}.{node.name} has {len(code_lines - comments)} lines of code (at most {MAX_FUNCTION_LINES})")
