"""The one rule for "the hub is off limits", shared by install.py and the downloader.

Standard library only: install.py asks it at every WebUI launch without importing huggingface_hub.
"""
from __future__ import annotations

import os
import sys

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "ON", "YES", "TRUE")  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES


def hub_offline(environ=None) -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is 1/on/yes/true (any case, spaces ignored).

    With ``environ`` None (the process environment), an already imported huggingface_hub whose
    ``constants.HF_HUB_OFFLINE`` is set counts too: it read the variables when it was imported (or the host
    set the constant), and it refuses every request then. huggingface_hub is never imported here.
    """
    if environ is None:
        constants = sys.modules.get("huggingface_hub.constants")
        if getattr(constants, "HF_HUB_OFFLINE", False):
            return True
        environ = os.environ
    return any(str(environ.get(name, "")).strip().upper() in _TRUE for name in OFFLINE_VARIABLES)
