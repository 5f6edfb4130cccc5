"""Fetch, verify and install the LCM-LoRA weights with the real huggingface_hub client.

``ensure_weights(variant, lora_dir)`` is idempotent: a file whose verification record still matches is
returned without any network request; a file put there by hand is hashed and accepted when it matches
the registry; otherwise the file is downloaded into a hidden staging folder (huggingface_hub
``local_dir`` mode: partial bytes in ``.cache/huggingface/download/*.incomplete``), moved to a name the
WebUI never lists, verified (size + sha256, or the safetensors header where the registry has no
confirmed hash) and only then renamed into place with ``os.replace``.

huggingface_hub compatibility: 0.2x-0.36 (WebUI venvs) and 1.x/2.x. Only arguments valid in all of them
are passed. Resuming: 0.x keeps ``<hash>.<etag>.incomplete`` between calls and continues it with a
``Range`` request; 1.x/2.x resume with ``Range`` only within one call (a process-unique temp file is
discarded on failure), so ``retries`` here re-enter hf_hub_download after a cut transfer.

Xet: the real repos are Xet-backed. When ``hf_xet`` is installed huggingface_hub downloads through Xet,
otherwise (or with ``HF_HUB_DISABLE_XET=1``) through plain HTTP. Both end in the same verification, so
the transport cannot put wrong bytes in place; network errors suggest ``HF_HUB_DISABLE_XET=1``.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from lib_lcm import __version__
from lib_lcm.weights import (
    DEFAULT_ENDPOINT,
    WeightsBusyError,
    WeightsDiskFullError,
    WeightsDownloadDisabledError,
    WeightsEntry,
    WeightsError,
    WeightsNetworkError,
    WeightsNotFoundError,
    WeightsOfflineError,
    WeightsTimeoutError,
    WeightsVerificationError,
    filesystem_error,
    get_entry,
    lock_path,
    make_folders,
    manual_download_hint,
    partial_bytes,
    recorded_verification,
    remember_verified,
    staging_dir,
    target_path,
    verify_file,
    verifying_path,
    write_sidecar,
)

LIBRARY_NAME = "sd-webui-lcm-lora"
DEFAULT_LOCK_TIMEOUT = 900.0
_DISK_MARGIN = 16 * 1024 * 1024


def ensure_weights(
    variant: str,
    lora_dir,
    progress=None,
    *,
    registry=None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    retries: int = 2,
    cache_dir=None,
    allow_download: bool = True,
    log=print,
) -> Path:
    """Make sure the verified LCM-LoRA file for ``variant`` is at ``<lora_dir>/LCM-LoRA/<stem>.safetensors``.

    Args:
        variant: registry id, "sd15", "sdxl" or "ssd1b".
        lora_dir: the WebUI's Lora folder (``shared.cmd_opts.lora_dir`` inside the WebUI).
        progress: optional ``progress(done_bytes: int, total_bytes: int | None)``, called from a helper
            thread about twice a second while bytes arrive (also while waiting for another process's
            download) and once with ``done == total`` at the end. Exceptions it raises are ignored.
        registry: ``{variant: WeightsEntry}``; default: ``load_registry()`` (``LCM_LORA_REGISTRY``).
        endpoint: hub URL; default ``HF_ENDPOINT`` read now, then huggingface.co.
        token: passed to huggingface_hub (None: ``HF_TOKEN`` / the saved login).
        timeout: seconds for the reachability probe and the metadata request (default
            ``HF_HUB_ETAG_TIMEOUT`` or 10). Body reads use ``HF_HUB_DOWNLOAD_TIMEOUT`` (huggingface_hub).
        lock_timeout: seconds to wait while another process downloads the same variant.
        retries: extra attempts after a transfer error; each attempt continues from the partial bytes
            where the huggingface_hub version keeps them.
        cache_dir: huggingface_hub cache looked up before downloading (a copy is reused, then verified).
        allow_download: False to only accept (and verify) a file already on disk, never the network.
        log: callable taking one line for the console (default ``print``); None for silence.

    Returns:
        The path of the verified file.

    Raises:
        WeightsError subclasses; every message names the fix (see lib_lcm.weights for the classes).
    """
    log = log or (lambda line: None)
    entry = get_entry(variant, registry)
    final = target_path(entry, lora_dir)
    if recorded_verification(entry, lora_dir):
        write_sidecar(entry, lora_dir)
        return final
    if final.is_file():  # placed by hand, changed, or in a read-only folder: hashing needs no lock
        verification = verify_file(entry, final)
        if verification.ok:
            remember_verified(entry, lora_dir, verification)
            log(f"LCM-LoRA: {final} verified ({_how(entry, verification)})")
            return final
    make_folders(lora_dir)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    with _download_lock(entry, lora_dir, lock_timeout, progress, log):
        if recorded_verification(entry, lora_dir):  # another process finished while we waited
            write_sidecar(entry, lora_dir)
            return final
        if _install_local_candidates(entry, lora_dir, log):
            return final
        if not allow_download:
            raise WeightsDownloadDisabledError(
                f"{entry.stem} is not installed and downloading is turned off (LCM-LoRA settings). "
                f"{manual_download_hint(entry, lora_dir, endpoint)}"
            )
        if _offline():
            raise WeightsOfflineError(
                f"{entry.stem} is not installed and HF_HUB_OFFLINE is set; it will be downloaded on first use "
                f"once online. {manual_download_hint(entry, lora_dir, endpoint)}"
            )
        timeout = float(timeout if timeout is not None else os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
        remote_size, etag = _probe(entry, lora_dir, endpoint, token, timeout)
        total = entry.size or remote_size
        _remove_stale_partials(entry, lora_dir, etag)
        _check_disk_space(entry, lora_dir, total)
        log(f"LCM-LoRA: downloading {entry.stem} ({_megabytes(total)}) from {entry.url(endpoint)}")
        with _ProgressPoller(entry, lora_dir, total, progress):
            staged = _download(entry, lora_dir, endpoint, token, timeout, retries, cache_dir, log)
        verification = _install(entry, lora_dir, Path(staged), log, source=entry.url(endpoint))
        if progress is not None:
            _call_progress(progress, verification.size, verification.size)
        shutil.rmtree(staging_dir(entry, lora_dir), ignore_errors=True)
        return final


# -- local files -------------------------------------------------------------------------------------


def _install_local_candidates(entry: WeightsEntry, lora_dir, log) -> bool:
    """Accept a hand-placed file, or finish an install a crashed process left half-done."""
    final = target_path(entry, lora_dir)
    if final.exists():
        verification = verify_file(entry, final)
        if verification.ok:
            remember_verified(entry, lora_dir, verification)
            log(f"LCM-LoRA: {final} verified ({_how(entry, verification)})")
            return True
        rejected = verifying_path(entry, lora_dir).with_suffix(".rejected")
        log(f"LCM-LoRA: {final} is not the expected file ({verification.problem}); moved to {rejected}")
        _replace(final, rejected)
    leftovers = [verifying_path(entry, lora_dir), staging_dir(entry, lora_dir) / entry.filename]
    for leftover in leftovers:
        if leftover.is_file():
            try:
                _install(entry, lora_dir, leftover, log, source=str(leftover))
                return True
            except WeightsVerificationError:
                pass  # _install discarded it
    return False


def _install(entry: WeightsEntry, lora_dir, staged: Path, log, source: str):
    """Verify ``staged`` under a name the WebUI never lists, then rename it into place atomically."""
    part = verifying_path(entry, lora_dir)
    if staged != part:
        _replace(staged, part)
    verification = verify_file(entry, part)
    if not verification.ok:
        part.unlink(missing_ok=True)
        raise WeightsVerificationError(
            f"the {entry.stem} bytes from {source} failed verification: {verification.problem}. Nothing was "
            "installed and the bytes were discarded. Check HF_ENDPOINT / LCM_LORA_REGISTRY if you use a "
            f"mirror, or retry later. {manual_download_hint(entry, lora_dir)}"
        )
    final = target_path(entry, lora_dir)
    _replace(part, final)
    remember_verified(entry, lora_dir, verification)
    log(f"LCM-LoRA: installed {final} ({_how(entry, verification)})")
    return verification


def _how(entry: WeightsEntry, verification) -> str:
    if verification.method == "sha256":
        return "sha256 verified"
    mirror = " (matches the hash seen on mirrors)" if verification.sha256 == entry.unconfirmed_sha256 else ""
    return f"safetensors header checked; sha256 {verification.sha256}{mirror} recorded but not confirmed"


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise filesystem_error(exc, "moving to", dst) from None


def _remove_stale_partials(entry: WeightsEntry, lora_dir, etag: str | None) -> None:
    """Drop partial files no download can continue (held lock: nobody is writing them).

    huggingface_hub 0.x names a resumable partial ``<hash>.<etag>.incomplete``; 1.x/2.x add a
    process-unique part, which a killed process leaves behind for good.
    """
    folder = staging_dir(entry, lora_dir) / ".cache" / "huggingface" / "download"
    for path in folder.glob("*.incomplete"):
        parts = path.name.split(".")
        if len(parts) != 3 or (etag and parts[1] != etag):
            path.unlink(missing_ok=True)


def _check_disk_space(entry: WeightsEntry, lora_dir, total: int | None) -> None:
    if not total:
        return
    folder = staging_dir(entry, lora_dir).parent
    needed = total - partial_bytes(entry, lora_dir) + _DISK_MARGIN
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WeightsDiskFullError(
            f"{entry.stem} needs {_megabytes(needed)} in {folder} but only {_megabytes(free)} are free; "
            "free some space or point --lora-dir at another disk."
        )


def _megabytes(n: int | None) -> str:
    return "size unknown" if not n else f"{n / 1e6:.1f} MB"


# -- network -----------------------------------------------------------------------------------------


def _offline() -> bool:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsError(
            "huggingface_hub is not installed in this Python; install it with `pip install huggingface_hub` "
            "(the WebUI's venv ships it)."
        ) from None
    return huggingface_hub


def _probe(entry: WeightsEntry, lora_dir, endpoint, token, timeout: float):
    """One HEAD without retries: fail in ``timeout`` seconds instead of huggingface_hub's ~23 s backoff.

    Returns (size, etag) as the hub reports them (None where absent). Any 2xx/3xx answer means reachable;
    hf_hub_download then follows relative redirects (renamed repos) itself.
    """
    hub = _hub()
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    url = hub.hf_hub_url(entry.repo_id, entry.filename, revision=entry.revision, endpoint=endpoint)
    http_logger = logging.getLogger(http_backoff.__module__)
    level = http_logger.level
    http_logger.setLevel(logging.ERROR)  # its retry warnings would repeat our own message
    try:
        headers = build_hf_headers(token=token, library_name=LIBRARY_NAME, library_version=__version__)
        headers["Accept-Encoding"] = "identity"
        # Like huggingface_hub's own metadata call, do not follow the redirect to the CDN: presigned CDN
        # URLs may refuse HEAD, and the hub puts size and etag on the redirect itself.
        no_redirects = {"follow_redirects": False} if _version(hub.__version__) >= (1, 0) else {"allow_redirects": False}
        response = http_backoff(
            "HEAD", url, headers=headers, timeout=timeout, max_retries=0, retry_on_status_codes=(), **no_redirects
        )
        hf_raise_for_status(response)
    except Exception as exc:
        raise _as_weights_error(exc, entry, lora_dir, endpoint, timeout) from exc
    finally:
        http_logger.setLevel(level)
    head = response.headers
    size = head.get("X-Linked-Size") or (None if 300 <= response.status_code < 400 else head.get("Content-Length"))
    etag = (head.get("X-Linked-Etag") or head.get("ETag") or "").removeprefix("W/").strip('"') or None
    return (int(size) if size and size.isdigit() else None), etag


def _download(entry: WeightsEntry, lora_dir, endpoint, token, timeout, retries, cache_dir, log) -> str:
    hub = _hub()
    kwargs = dict(
        repo_id=entry.repo_id,
        filename=entry.filename,
        revision=entry.revision,
        local_dir=str(staging_dir(entry, lora_dir)),
        endpoint=endpoint,
        token=token,
        etag_timeout=timeout,
        library_name=LIBRARY_NAME,
        library_version=__version__,
    )
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if _version(hub.__version__) < (0, 23):
        # Before 0.23 local_dir symlinked big files into the cache and did not resume by default.
        kwargs.update(local_dir_use_symlinks=False, resume_download=True)
    for attempt in range(retries + 1):
        try:
            return hub.hf_hub_download(**kwargs)
        except Exception as exc:
            error = _as_weights_error(exc, entry, lora_dir, endpoint, timeout)
            if not isinstance(error, WeightsNetworkError) or isinstance(error, WeightsOfflineError) or attempt == retries:
                raise error from exc
            log(f"LCM-LoRA: transfer of {entry.stem} interrupted ({_first_line(exc)}); retrying")
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    text = text.splitlines()[0] if text else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_NOT_FOUND = (
    ("RepositoryNotFoundError", "repository not found"),
    ("RevisionNotFoundError", "revision not found"),
    ("EntryNotFoundError", "file not found in the repository"),
    ("RemoteEntryNotFoundError", "file not found in the repository"),
)

_REASONS = (
    ("Name or service not known", "cannot resolve the host name: no network or DNS"),
    ("nodename nor servname", "cannot resolve the host name: no network or DNS"),
    ("getaddrinfo failed", "cannot resolve the host name: no network or DNS"),
    ("Temporary failure in name resolution", "cannot resolve the host name: no network or DNS"),
    ("Connection refused", "connection refused"),
    ("actively refused", "connection refused"),
    ("Network is unreachable", "network is unreachable"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS certificate verification failed (proxy? set REQUESTS_CA_BUNDLE)"),
)


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _hub_error_types():
    hub = sys.modules.get("huggingface_hub")
    errors = sys.modules.get("huggingface_hub.errors") or getattr(hub, "utils", None)
    names = ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
             "RemoteEntryNotFoundError", "GatedRepoError", "OfflineModeIsEnabled", "HfHubHTTPError")
    return {name: getattr(errors, name, None) for name in names}


def _as_weights_error(exc: BaseException, entry: WeightsEntry, lora_dir, endpoint, timeout) -> WeightsError:
    """Translate whatever huggingface_hub / requests / httpx / the OS raised into a WeightsError."""
    types = _hub_error_types()
    hint = manual_download_hint(entry, lora_dir, endpoint)
    where = f"{entry.repo_id}@{entry.revision}/{entry.filename}"

    def is_a(cause, *names):
        return any(types.get(n) is not None and isinstance(cause, types[n]) for n in names)

    for cause in _chain(exc):
        if isinstance(cause, WeightsError):
            return cause
        if is_a(cause, "OfflineModeIsEnabled"):
            return WeightsOfflineError(f"{entry.stem} is not installed and HF_HUB_OFFLINE is set. {hint}")
        if is_a(cause, "GatedRepoError"):
            return WeightsNotFoundError(f"{where} needs a Hugging Face login: set HF_TOKEN. {hint}")
        missing = next((what for name, what in _NOT_FOUND if is_a(cause, name)), None)
        if missing:
            return WeightsNotFoundError(
                f"{where} was not found on {endpoint or DEFAULT_ENDPOINT} ({missing}: moved or deleted, or private "
                f"without HF_TOKEN). Update the extension, or point LCM_LORA_REGISTRY at a registry with the "
                f"new location. {hint}"
            )
        if is_a(cause, "HfHubHTTPError"):
            status = getattr(getattr(cause, "response", None), "status_code", None)
            if status in (401, 403, 404):
                return WeightsNotFoundError(f"{where}: the hub answered HTTP {status}. {hint}")
            return WeightsNetworkError(
                f"the hub answered HTTP {status} for {where}; it may be down, retry later. {hint}"
            )
        names = {t.__name__ for t in type(cause).__mro__}
        if any("Timeout" in n for n in names) or isinstance(cause, TimeoutError):
            return WeightsTimeoutError(
                f"the hub did not answer within {timeout:g} s while fetching {where}; check the network "
                f"or proxy (HF_ENDPOINT, HTTPS_PROXY; HF_HUB_DISABLE_XET=1 if Xet hosts are blocked). {hint}"
            )
        if isinstance(cause, OSError) and cause.errno in (
            errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EACCES, errno.EPERM, errno.EROFS
        ):
            return filesystem_error(cause, "downloading into", staging_dir(entry, lora_dir))
        if names & {"ConnectionError", "ConnectError", "NetworkError", "RemoteProtocolError",
                    "ChunkedEncodingError", "ProtocolError", "TransportError", "LocalEntryNotFoundError"}:
            return WeightsNetworkError(
                f"could not download {where} from {endpoint or DEFAULT_ENDPOINT} ({_first_line(cause)}); check "
                f"the network or proxy, or retry later (HF_HUB_DISABLE_XET=1 if Xet hosts are blocked). {hint}"
            )
        if isinstance(cause, OSError) and "size" in str(cause).lower() and "consistency" in str(cause).lower():
            return WeightsNetworkError(f"the transfer of {where} was incomplete ({_first_line(cause)}). {hint}")
    if isinstance(exc, OSError):
        return filesystem_error(exc, "downloading into", staging_dir(entry, lora_dir), hint)
    return WeightsError(f"unexpected error while downloading {where}: {_first_line(exc)}. {hint}")


# -- locking and progress ----------------------------------------------------------------------------


class _download_lock:
    """Cross-process lock per variant (filelock ships with huggingface_hub); waiting is announced."""

    def __init__(self, entry, lora_dir, timeout, progress, log):
        _hub()  # filelock is one of its dependencies
        from filelock import FileLock

        self.entry, self.lora_dir, self.timeout, self.progress, self.log = entry, lora_dir, timeout, progress, log
        self.lock = FileLock(str(lock_path(entry, lora_dir)))

    def __enter__(self):
        from filelock import Timeout

        try:
            try:
                self.lock.acquire(timeout=0)
                return self
            except Timeout:
                pass
            self.log(
                f"LCM-LoRA: another process is downloading {self.entry.stem}; waiting up to {self.timeout:.0f} s"
            )
            with _ProgressPoller(self.entry, self.lora_dir, self.entry.size, self.progress):
                self.lock.acquire(timeout=self.timeout)
        except Timeout:
            raise WeightsBusyError(
                f"another process kept {lock_path(self.entry, self.lora_dir)} locked for {self.timeout:.0f} s "
                f"while downloading {self.entry.stem}; wait for it to finish, or delete the lock file if no "
                "download is running."
            ) from None
        except OSError as exc:
            raise filesystem_error(exc, "locking", lock_path(self.entry, self.lora_dir)) from None
        return self

    def __exit__(self, *exc_info):
        self.lock.release()


def _call_progress(progress, done, total) -> None:
    try:
        progress(done, total)
    except Exception:  # a broken UI callback must not break the download
        pass


class _ProgressPoller:
    """Reports the growth of the partial file to ``progress`` from a daemon thread.

    Polling the file works the same for every huggingface_hub version and for transfers that another
    process is doing.
    """

    def __init__(self, entry, lora_dir, total, progress, interval: float = 0.5):
        self.entry, self.lora_dir, self.total, self.progress, self.interval = entry, lora_dir, total, progress, interval
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
            done = partial_bytes(self.entry, self.lora_dir)
            if done != last:
                last = done
                _call_progress(self.progress, done, self.total)
