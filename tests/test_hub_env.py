"""lib_lcm.weights.hub_env.hub_offline: the one offline rule of install.py and the downloader."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lib_lcm.weights.hub_env import hub_offline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("environ, offline", [
    ({}, False),
    ({"HF_HUB_OFFLINE": "1"}, True),
    ({"HF_HUB_OFFLINE": " yes "}, True),
    ({"HF_HUB_OFFLINE": "True"}, True),
    ({"HF_HUB_OFFLINE": "on"}, True),
    ({"HF_HUB_OFFLINE": "0"}, False),
    ({"HF_HUB_OFFLINE": ""}, False),
    ({"HF_HUB_OFFLINE": "off"}, False),
    ({"TRANSFORMERS_OFFLINE": "1"}, True),
    ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, True),
])
def test_environment_variables(environ, offline):
    assert hub_offline(environ) is offline


def test_the_process_environment_is_the_default(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    assert hub_offline() is False
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline() is True


def test_an_imported_huggingface_hub_in_offline_mode_counts(monkeypatch):
    import huggingface_hub.constants as constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_offline() is True
    assert hub_offline({}) is False  # an explicit environment is the whole question


def test_never_imports_huggingface_hub():
    code = ("import sys; from lib_lcm.weights.hub_env import hub_offline; hub_offline(); "
            "print('huggingface_hub' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={"PATH": ""})
    assert out.stdout.strip() == "False", out.stderr
