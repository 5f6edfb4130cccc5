"""Shared pytest fixtures."""
from __future__ import annotations

import pytest

from tests.fixtures import tiny


@pytest.fixture(scope="session")
def tiny_models() -> tiny.TinyModels:
    """Tiny random SD checkpoints and LoRAs (tests/fixtures/tiny.py), built once per generator version
    into ~/.cache/sd-webui-lcm-lora (or $XDG_CACHE_HOME/sd-webui-lcm-lora)."""
    return tiny.cached()
