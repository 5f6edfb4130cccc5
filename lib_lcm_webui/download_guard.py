"""At most one download per variant at a time in this server, whoever asks (the API, the panel's button).

The downloader's cross-process file lock already prevents a second transfer, but a second caller would wait on
it for as long as the first transfer takes, holding a server thread; here it is told at once instead.
"""
from __future__ import annotations

import contextlib
import threading

_running: set[str] = set()
_guard = threading.Lock()


class DownloadRunning(RuntimeError):
    """A download of this variant is already running in this server."""


@contextlib.contextmanager
def exclusive_download(variant: str, stem: str):
    """Run the body as this server's only download of `variant`; DownloadRunning (naming what to do) if one runs."""
    with _guard:
        if variant in _running:
            raise DownloadRunning(f"a download of {stem} is already running on this server; wait for it to finish")
        _running.add(variant)
    try:
        yield
    finally:
        with _guard:
            _running.discard(variant)
