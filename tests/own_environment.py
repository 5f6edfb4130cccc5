"""The environment every unit test starts from: none of the caller's settings, a home folder of its own.

Users run the suite from the shells they run the WebUI from, where ``HF_HUB_OFFLINE=1``, ``HF_ENDPOINT``,
``COMMANDLINE_ARGS`` or ``LCM_LORA_REGISTRY`` are often set; each changes what the code under test does.
So ``tests/conftest.py`` removes every variable the code reads (below) and points ``HOME``,
``XDG_CACHE_HOME`` and ``HF_HOME`` at a fresh folder; a test that needs one of them sets it itself.
The e2e tier keeps the caller's environment: it is told where the prepared WebUI is (``SD_WEBUI_DIR``,
``SD_WEBUI_PYTHON``) and starts that WebUI with the environment it would have.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# What the code and huggingface_hub read: grep os.environ / getenv in lib_lcm, lib_lcm_webui, install.py.
CLEARED_PREFIXES = ("HF_", "HUGGINGFACE_", "LCM_", "SD_WEBUI_")
CLEARED_NAMES = frozenset({
    "TRANSFORMERS_OFFLINE",  # lib_lcm.weights.hub_env: huggingface_hub's second offline switch
    "COMMANDLINE_ARGS",  # the WebUI's launch flags: --lora-dir, --data-dir, ... (lib_lcm.weights.webui_folders)
    "PYTHONPATH",  # the WebUI puts its root there for install.py (lib_lcm.weights.webui_folders.find_webui_root)
    "PWD",  # the shell's folder names the extension's symlinked path (lib_lcm.__main__)
    "DO_NOT_TRACK", "DISABLE_TELEMETRY",  # read by huggingface_hub.constants
})

# The caller's environment as the session started, for steps that act for the caller rather than test the
# code: pip installing a pinned requirement uses the caller's pip settings and cache, as README's pip step does.
CALLER = dict(os.environ)


def callers_variables(environ) -> list[str]:
    return [name for name in environ if name.startswith(CLEARED_PREFIXES) or name in CLEARED_NAMES]


def own_home(monkeypatch, home: Path) -> None:
    """Remove the caller's variables, and give the test ``home`` as its home and caches."""
    for name in callers_variables(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    if os.name == "nt":
        monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    hub_constants_as_if_imported_now(monkeypatch)


_CONSTANTS_CODE = {}


def hub_constants_as_if_imported_now(monkeypatch) -> None:
    """huggingface_hub reads its variables once, at import (``constants.HF_HUB_OFFLINE``, ``HF_HOME``, ...):
    an import made under the caller's environment, by an earlier test or at collection, would keep the
    caller's offline switch and home. Every constant whose value this environment changes is set for the
    test (and restored after it); the module is read again, never re-imported, so nothing else changes."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return  # imported later, it reads this environment itself
    code = _CONSTANTS_CODE.get(constants.__file__)
    if code is None:
        spec = importlib.util.spec_from_file_location("huggingface_hub.constants", constants.__file__)
        code = _CONSTANTS_CODE[constants.__file__] = spec.loader.get_code(spec.name)
    fresh = {"__name__": "huggingface_hub.constants", "__file__": constants.__file__}
    exec(code, fresh)
    for name, value in fresh.items():
        if name.isupper() and getattr(constants, name, None) != value:
            monkeypatch.setattr(constants, name, value, raising=False)
