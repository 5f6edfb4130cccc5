"""One download per variant across processes, and progress reports while it runs (ours or another's).

Two WebUIs, install.py's background worker and the WebUI, or a UI click and an API call may want the same
file at once: a file lock per variant makes the second wait (announced, with progress) and then use the
first one's verified file. Progress is read off the growing partial file, which works the same for every
huggingface_hub version and for transfers another process is doing.

The lock file is removed when its holder is done, so no empty ``.lock`` stays behind (``LockFile``).
"""
from __future__ import annotations

import os
import threading
import time

from lib_lcm.weights.errors import WeightsBusyError, filesystem_error
from lib_lcm.weights.hub_errors import import_hub
from lib_lcm.weights.lora_files import LoraFiles


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


class LockFile:
    """An exclusive cross-process lock on ``path`` that leaves no file behind once released.

    POSIX: ``flock`` on the file, and the holder unlinks it while it still holds the lock, just before
    closing. A waiter that had opened the same file earlier and gets the lock afterwards sees that the path
    is gone or names a newer file (``fstat`` and ``stat`` differ) and tries again on the path: so two
    processes never both believe they hold it. (filelock is not used here: whether its UnixFileLock keeps or
    removes the file, and whether its waiters check for a removed one, changed between its releases, and
    WebUI venvs hold many of them; mixing two of those rules on one path would be a race.) Windows: filelock's
    WindowsFileLock, which deletes the file on release; Windows refuses to delete a file another process
    has open, so the file stays while someone waits on it and the last one out removes it.
    """

    def __init__(self, path, poll_interval: float = 0.1):
        self.path, self.poll_interval = os.fspath(path), poll_interval
        self._fd = None
        self._windows_lock = None
        if os.name == "nt":
            import_hub()  # filelock is one of its dependencies
            from filelock import FileLock

            self._windows_lock = FileLock(self.path)

    def acquire(self, timeout: float) -> bool:
        """True once held; False when another process still held it after ``timeout`` seconds."""
        if self._windows_lock is not None:
            from filelock import Timeout

            try:
                self._windows_lock.acquire(timeout=timeout, poll_interval=self.poll_interval)
            except Timeout:
                return False
            return True
        deadline = time.monotonic() + timeout
        while True:
            held = self._try_posix()
            if held:
                return True
            if held is None:  # got the lock on a file its holder had just removed: again, on the path's file
                continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_interval)

    def _try_posix(self) -> bool | None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        if not self._names(fd):
            os.close(fd)
            return None
        self._fd = fd
        return True

    def _names(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.stat(self.path), os.fstat(fd))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._windows_lock is not None:
            self._windows_lock.release()
            return
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._names(fd):  # unlink while still holding it: see the class docstring
                os.unlink(self.path)
        except OSError:
            pass  # a folder that refuses deletion keeps an empty file; the lock itself still works
        finally:
            os.close(fd)


class DownloadLock:
    """Cross-process lock per variant (``LockFile``); waiting is announced, with progress."""

    def __init__(self, files: LoraFiles, timeout: float, progress, log):
        self.files, self.timeout, self.progress, self.log = files, timeout, progress, log
        self.lock = LockFile(files.lock)

    def __enter__(self):
        stem = self.files.entry.stem
        try:
            if self.lock.acquire(0):
                return self
            self.log(f"LCM-LoRA: another process is downloading {stem}; waiting up to {self.timeout:.0f} s")
            with ProgressPoller(self.files, self.files.entry.size, self.progress):
                if self.lock.acquire(self.timeout):
                    return self
        except OSError as exc:
            raise filesystem_error(exc, "locking", self.files.lock) from None
        raise WeightsBusyError(
            f"another process kept {self.files.lock} locked for {self.timeout:.0f} s while downloading "
            f"{stem}; wait for it to finish, or delete the lock file if no download is running."
        )

    def __exit__(self, *exc_info):
        self.lock.release()
