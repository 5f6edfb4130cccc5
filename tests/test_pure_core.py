"""lib_lcm must import with the WebUI absent: `modules` poisoned in sys.modules."""
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lib_lcm_modules():
    import lib_lcm

    names = ["lib_lcm"]
    for info in pkgutil.walk_packages(lib_lcm.__path__, "lib_lcm."):
        if info.name != "lib_lcm.__main__":
            names.append(info.name)
    return names


def test_lib_lcm_imports_without_webui():
    names = lib_lcm_modules()
    assert len(names) > 1
    code = (
        "import sys, importlib\n"
        "sys.modules['modules'] = None\n"
        "sys.modules['gradio'] = None\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "bad = [m for m in sys.modules if m == 'modules' or m.startswith('modules.')]\n"
        "assert sys.modules['modules'] is None and bad == ['modules'], bad\n"
        "print('ok', len(" + repr(names) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_poisoned_modules_really_blocks_imports():
    # Guards the test above: a poisoned entry must make `import modules` fail.
    saved = sys.modules.get("modules", "absent")
    sys.modules["modules"] = None
    try:
        try:
            importlib.import_module("modules")
        except ImportError:
            pass
        else:
            raise AssertionError("import modules succeeded despite the poison")
    finally:
        if saved == "absent":
            del sys.modules["modules"]
        else:
            sys.modules["modules"] = saved
