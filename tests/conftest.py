"""Shared pytest fixtures, and the environment each unit test starts from (tests/own_environment.py).

Imports nothing beyond pytest at module level: tests/test_download_hub2.py runs the downloader tests with this
conftest in a venv that has no torch.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import own_environment

E2E = Path(__file__).resolve().parent / "e2e"


@pytest.fixture(autouse=True)
def no_callers_environment(request, monkeypatch, tmp_path_factory):
    """Every unit test runs without the caller's HF_*, HUGGINGFACE_*, LCM_*, WebUI variables and home folder;
    the e2e tier keeps them (it finds the prepared WebUI through SD_WEBUI_DIR and SD_WEBUI_PYTHON)."""
    if E2E not in Path(request.node.path).resolve().parents:
        own_environment.own_home(monkeypatch, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def tiny_models():
    """Tiny random SD checkpoints and LoRAs (tests/fixtures/tiny.py), built once per generator version
    into the checkout's .tiny-fixtures folder (ignored by git)."""
    from tests.fixtures import tiny  # torch: only where a test asks for the models

    return tiny.cached(tiny.checkout_cache_root())
