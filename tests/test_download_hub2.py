"""The downloader tests again, under the newest huggingface_hub (WebUI 1.10 venvs hold 0.36, PyPI has 2.x).

The test builds their venv itself, inside the checkout: ``.venv-hub2`` (ignored by git), made from the base
interpreter (a venv made from a venv's python would not be a clean one on every Python), holding
requirements-hub2.txt's pinned huggingface_hub and requirements-dev.txt's pins of what those tests import
(no torch: about 15 s, once). It is built again whenever those pins or the Python change, and used as it is
otherwise; nothing outside the checkout is read or written.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests import own_environment

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-hub2"
MODULES = ["tests/test_download.py", "tests/test_download_cli.py"]
FROM_DEV_REQUIREMENTS = ("pytest", "numpy", "safetensors")  # what MODULES and tests/conftest.py import
WHERE_HUB_IS = "import huggingface_hub as h; print(h.__version__); print(h.__file__)"


def pins(path: Path) -> dict[str, str]:
    """``name -> name==version`` for each requirement line of ``path``."""
    lines = (line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {re.split(r"[=<>!~ ]", line)[0].lower().replace("_", "-"): line for line in lines if line}


def wanted_requirements() -> list[str]:
    dev = pins(ROOT / "requirements-dev.txt")
    return [dev[name] for name in FROM_DEV_REQUIREMENTS] + list(pins(ROOT / "requirements-hub2.txt").values())


def base_python() -> Path:
    """The interpreter the running venv was made from. ``sys._base_executable`` names it from Python 3.11 on;
    3.10 names the venv's own python there, so its base is looked up under ``sys.base_prefix`` instead."""
    base = Path(getattr(sys, "_base_executable", None) or sys.executable)
    if sys.prefix == sys.base_prefix or not base.is_relative_to(sys.prefix):
        return base
    if os.name == "nt":
        return Path(sys.base_prefix) / "python.exe"
    return Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)


def build(venv: Path, recipe: dict) -> None:
    """Make ``venv`` from the base interpreter and install the pins into it; pip runs with the caller's
    environment (their pip settings and download cache), as README's own pip step does."""
    made = run([base_python(), "-m", "venv", "--clear", venv], timeout=300)
    assert made.returncode == 0, f"could not make {venv}: {made.stderr.strip()[-2000:]}"
    installed = run([venv_python(venv), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     *recipe["requirements"]], env=own_environment.CALLER, cwd=ROOT, timeout=900)
    assert installed.returncode == 0, (f"could not install {' '.join(recipe['requirements'])} into {venv}:\n"
                                       f"{(installed.stderr or installed.stdout).strip()[-3000:]}")
    (venv / "built-from.json").write_text(json.dumps(recipe, indent=1), encoding="utf-8")


def hub2_python() -> Path:
    """.venv-hub2's python, built first when absent or built from other pins or another Python."""
    from filelock import FileLock

    recipe = {"python": str(base_python()), "version": sys.version, "requirements": wanted_requirements()}
    stamp = VENV / "built-from.json"
    with FileLock(str(VENV) + ".lock"):
        if not (stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == recipe):
            build(VENV, recipe)
    return venv_python(VENV)


def test_downloader_suite_passes_with_the_newest_huggingface_hub(tmp_path):
    python = hub2_python()
    pinned = pins(ROOT / "requirements-hub2.txt")["huggingface-hub"].split("==")[1]
    where = run([python, "-c", WHERE_HUB_IS], cwd=tmp_path, timeout=120)
    version, location = where.stdout.split()
    assert (version, Path(location).is_relative_to(VENV)) == (pinned, True), where.stdout + where.stderr
    done = run([python, "-m", "pytest", *MODULES, "-q", "-p", "no:cacheprovider", "--basetemp", tmp_path / "inner"],
               cwd=ROOT, env=dict(os.environ), timeout=900)
    summary = done.stdout.strip().splitlines()[-1:] or [""]
    print(f"huggingface_hub {version}: {summary[0]}")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_the_venv_is_made_from_the_base_interpreter_not_from_this_venvs_python():
    base = base_python()
    assert base.is_file() and not base.is_relative_to(sys.prefix) or sys.prefix == sys.base_prefix
    shown = run([base, "-c", "import sys; print(sys.prefix == sys.base_prefix)"], timeout=60)
    assert shown.stdout.split() == ["True"], shown.stdout + shown.stderr
