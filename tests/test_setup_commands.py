"""README's two set-up commands, as written: the test command (under Development) leaves the Python it is called
with untouched (it only makes the checkout's own virtual environment), CI runs exactly it, and the weights command
(README's main-job section) uses the WebUI's own python, never a pip install into whatever `python3` is."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


TEST_SECTION = "## Development"
WEIGHTS_SECTION = "## Download the weights"


def section(heading: str) -> str:
    """README from the line starting with ``heading`` to the next second-level heading."""
    start = README.index(f"\n{heading}") + 1
    end = README.find("\n## ", start)
    return README[start:] if end < 0 else README[start:end]


def fenced(section: str, language: str) -> list[str]:
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", section, re.S)]


def readme_test_command() -> str:
    blocks = [block for block in fenced(section(TEST_SECTION), "bash") if "pytest" in block]
    assert len(blocks) == 1, blocks
    return blocks[0]


def steps(command: str) -> list[list[str]]:
    return [shlex.split(step) for step in command.split("&&")]


def test_the_test_command_only_asks_the_callers_python_to_make_the_venv():
    first, *rest = steps(readme_test_command())
    assert first == ["python3", "-m", "venv", ".venv"]
    assert rest and all(step[0] == ".venv/bin/python" for step in rest)
    assert ["-m", "pip", "install"] == rest[0][1:4] and "requirements-dev.txt" in rest[0]
    assert rest[-1][1:3] == ["-m", "pytest"]


def test_ci_runs_exactly_the_readme_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_test_command() in ci.splitlines()


def test_what_the_command_builds_in_the_checkout_is_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert {"/.venv/", "/.venv-hub2/", "/.venv-hub2.lock", "/.tiny-fixtures/"} <= set(ignored)


@pytest.mark.parametrize("name", ["requirements-dev.txt", "requirements-hub2.txt"])
def test_requirements_are_pinned(name):
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.+-]*", line) for line in requirements)


def freeze(python: Path) -> str:
    return subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def test_the_callers_python_is_the_same_after_the_command_makes_its_venv(tmp_path):
    caller = tmp_path / "caller"
    subprocess.run([sys.executable, "-m", "venv", str(caller)], check=True, timeout=300)
    python = caller / ("Scripts" if os.name == "nt" else "bin") / "python"
    before = freeze(python)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    first = steps(readme_test_command())[0]
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(first, cwd=checkout, env=env, check=True, timeout=300)  # `python3` is the caller's here
    assert (checkout / ".venv" / "bin" / "python").exists()
    assert freeze(python) == before


def test_the_weights_command_runs_the_webuis_own_python_from_the_extension_folder():
    weights_section = section(WEIGHTS_SECTION)
    weights = [block for block in fenced(weights_section, "bash") if "lib_lcm download" in block]
    assert len(weights) == 1
    cd, run = steps(weights[0])
    assert cd[0] == "cd" and cd[1].endswith("/extensions/sd-webui-lcm-lora")
    assert run[:3] == ["../../venv/bin/python", "-m", "lib_lcm"] and "pip" not in weights[0]
    windows = fenced(weights_section, "bat")
    assert len(windows) == 1 and "..\\..\\venv\\Scripts\\python.exe -m lib_lcm download" in windows[0]
