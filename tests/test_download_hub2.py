"""The downloader tests again, under the newest huggingface_hub (WebUI 1.10 venvs hold 0.36, PyPI has 2.x).

The venv is built once (about 15 s: ``--system-site-packages`` plus ``pip install huggingface_hub>=1``, whose
copy shadows the global one) under ~/.cache/sd-webui-lcm-lora and refreshed weekly. Set
``LCM_TEST_HUB2_PYTHON`` to an interpreter that already has huggingface_hub >= 1 to skip building.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INNER = "LCM_TEST_HUB2_INNER"
MODULES = ["tests/test_download.py", "tests/test_download_cli.py"]
REFRESH_SECONDS = 7 * 24 * 3600
VERSION_CHECK = "import huggingface_hub as h; assert int(h.__version__.split('.')[0]) >= 1; print(h.__version__)"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sd-webui-lcm-lora"


def _hub_version(python: Path) -> str | None:
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", VERSION_CHECK], capture_output=True, text=True, cwd="/")
    return done.stdout.strip() if done.returncode == 0 else None


def _pip_install(python: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *extra,
                           "huggingface_hub>=1"], capture_output=True, text=True, timeout=600)


def hub2_python() -> Path:
    given = os.environ.get("LCM_TEST_HUB2_PYTHON")
    if given:
        return Path(given)
    from filelock import FileLock

    venv = _cache_root() / f"venv-hub-latest-py{sys.version_info[0]}{sys.version_info[1]}"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):
        stamp = venv / "built"
        if _hub_version(python) and stamp.exists():
            if time.time() - stamp.stat().st_mtime > REFRESH_SECONDS and _pip_install(python, "-U").returncode == 0:
                stamp.touch()
            return python
        made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--clear", str(venv)],
                              capture_output=True, text=True)
        installed = _pip_install(python) if made.returncode == 0 else made
        if installed.returncode != 0 or not _hub_version(python):
            pytest.skip(f"could not build a venv with the newest huggingface_hub (offline?): "
                        f"{(installed.stderr or installed.stdout).strip()[-300:]}")
        stamp.touch()
    return python


@pytest.mark.skipif(bool(os.environ.get(INNER)), reason="already the inner run")
def test_downloader_suite_passes_with_the_newest_huggingface_hub():
    python = hub2_python()
    version = _hub_version(python)
    assert version, f"{python} has no huggingface_hub >= 1"
    env = dict(os.environ, **{INNER: "1"})
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), "-m", "pytest", *MODULES, "-q", "-p", "no:cacheprovider", "--noconftest"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1:] or [""]
    print(f"huggingface_hub {version}: {summary[0]}")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
