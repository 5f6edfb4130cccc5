"""One download per variant across processes, and progress reports while it runs (ours or another's).

Two WebUIs, install.py's background worker and the WebUI, or a UI click and an API call may want the same
file at once: a file lock per variant makes the second wait (announced, with progress) and then use the
first one's verified file. Progress is read off the growing partial file, which works the same for every
huggingface_hub version and for transfers another process is doing.
"""
from __future__ import annotations

import threading

from lib_lcm.errors import WeightsBusyError, filesystem_error
from lib_lcm.hub_errors import import_hub
from lib_lcm.lora_files import LoraFiles


def call_progress(progress, done, total) -> None:
    try:
        progress(done, total)
    except Exception:  # a broken UI callback must not break the download
        pass


class ProgressPoller:
    """Reports the growth of ``files``' partial download to ``progress`` from a daemon thread."""

    def __init__(self, files: LoraFiles, total: int | None, progress, interval: float = 0.5):
        self.files, self.total, self.progress, self.interval = files, total, progress, interval
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.progress is not None:
            self._thread = threading.Thread(target=self._run, name="lcm-lora-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self):
        last = None
        while not self._stop.wait(self.interval):
            done = self.files.partial_bytes()
            if done != last:
                last = done
                call_progress(self.progress, done, self.total)


class DownloadLock:
    """Cross-process lock per variant (filelock ships with huggingface_hub); waiting is announced."""

    def __init__(self, files: LoraFiles, timeout: float, progress, log):
        import_hub()  # filelock is one of its dependencies
        from filelock import FileLock

        self.files, self.timeout, self.progress, self.log = files, timeout, progress, log
        self.lock = FileLock(str(files.lock))

    def __enter__(self):
        from filelock import Timeout

        stem = self.files.entry.stem
        try:
            try:
                self.lock.acquire(timeout=0)
                return self
            except Timeout:
                pass
            self.log(f"LCM-LoRA: another process is downloading {stem}; waiting up to {self.timeout:.0f} s")
            with ProgressPoller(self.files, self.files.entry.size, self.progress):
                self.lock.acquire(timeout=self.timeout)
        except Timeout:
            raise WeightsBusyError(
                f"another process kept {self.files.lock} locked for {self.timeout:.0f} s while downloading "
                f"{stem}; wait for it to finish, or delete the lock file if no download is running."
            ) from None
        except OSError as exc:
            raise filesystem_error(exc, "locking", self.files.lock) from None
        return self

    def __exit__(self, *exc_info):
        self.lock.release()
