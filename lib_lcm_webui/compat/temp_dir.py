"""The host's folder for images it has not saved (its `temp_dir` option), which Live's images go through.

gradio writes every image a generation returns unsaved (each Live image: `p.do_not_save_samples`) into the folder
the host's `temp_dir` option names (`modules/ui_tempdir.py`, `save_pil_to_file`). Forge Neo's default for that
option is `<data dir>/tmp`, and Neo creates the folder only when the option changes (`on_tmpdir_changed`), never at
start: on a data dir without it every unsaved image failed (FileNotFoundError in the host, so no Live image ever
showed). A1111's default is "" (the system's temp folder), where nothing is needed.
"""
from __future__ import annotations

import os

from modules import shared


def ensure_unsaved_images_folder() -> None:
    """Create the folder the host's `temp_dir` option names when it is missing, as the host's own change
    handler does; nothing where the option is empty or absent."""
    folder = getattr(shared.opts, "temp_dir", "") or ""
    if folder and not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)
