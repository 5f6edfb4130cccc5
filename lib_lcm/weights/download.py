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

import logging
import os
import shutil
import time
from pathlib import Path

from lib_lcm import __version__
from lib_lcm.weights.errors import (
    WeightsDiskFullError,
    WeightsDownloadDisabledError,
    WeightsError,
    WeightsNetworkError,
    WeightsOfflineError,
    WeightsVerificationError,
    filesystem_error,
)
from lib_lcm.weights.hub_env import hub_offline
from lib_lcm.weights.hub_errors import as_weights_error, first_line, import_hub, unreachable_error
from lib_lcm.weights.lock import DownloadLock, ProgressPoller, call_progress
from lib_lcm.weights.lora_files import LoraFiles, make_folders
from lib_lcm.weights.progress import megabytes
from lib_lcm.weights.registry import get_entry
from lib_lcm.weights.verification import Verification, verify_file

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
        registry: ``{variant: WeightsEntry}``; default: ``current_registry()`` (``LCM_LORA_REGISTRY``).
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
        WeightsError subclasses; every message names the fix (see lib_lcm.weights.errors for the classes).
    """
    log = log or (lambda line: None)
    files = LoraFiles(get_entry(variant, registry), lora_dir)
    if files.recorded_verification():
        files.write_sidecar()
        return files.target
    verification = files.verify_on_disk()  # placed by hand, changed, or in a read-only folder: no lock needed
    if verification is not None and verification.ok:
        log(f"LCM-LoRA: {files.target} verified ({_how(files, verification)})")
        return files.target
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    if not files.state.is_dir() and not files.target.exists():  # nothing on disk to finish: refuse, create nothing
        _refuse_network(files, allow_download, endpoint)
    make_folders(lora_dir)
    with DownloadLock(files, lock_timeout, progress, log):
        if files.recorded_verification():  # another process finished while we waited
            files.write_sidecar()
            return files.target
        if _install_local_candidates(files, log):
            return files.target
        _refuse_network(files, allow_download, endpoint)
        timeout = float(timeout if timeout is not None else os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
        try:
            _fetch(files, progress, endpoint, token, timeout, retries, cache_dir, log)
        finally:
            _tidy_staging(files)
        return files.target


def _refuse_network(files: LoraFiles, allow_download: bool, endpoint) -> None:
    if not allow_download:
        raise WeightsDownloadDisabledError(
            f"{files.entry.stem} is not installed and downloading is turned off (LCM-LoRA settings). "
            f"{files.manual_download_hint(endpoint)}"
        )
    if hub_offline():
        raise WeightsOfflineError(
            f"{files.entry.stem} is not installed and HF_HUB_OFFLINE is set; it will be downloaded on first "
            f"use once online. {files.manual_download_hint(endpoint)}"
        )


def _fetch(files: LoraFiles, progress, endpoint, token, timeout: float, retries: int, cache_dir, log) -> None:
    """Probe, download into staging, verify and install; the caller holds the lock."""
    entry = files.entry
    remote_size, etag = _probe(files, endpoint, token, timeout)
    total = entry.size or remote_size
    _remove_stale_partials(files, etag)
    _check_disk_space(files, total)
    log(f"LCM-LoRA: downloading {entry.stem} ({megabytes(total) if total else 'size unknown'}) "
        f"from {entry.url(endpoint)}")
    with ProgressPoller(files, total, progress):
        staged = _download(files, endpoint, token, timeout, retries, cache_dir, log)
    verification = _install(files, Path(staged), log, source=entry.url(endpoint))
    if progress is not None:
        call_progress(progress, verification.size, verification.size)


def _tidy_staging(files: LoraFiles) -> None:
    """After a download, done or failed (the caller still holds the variant lock, so nobody else uses the
    staging folder): drop huggingface_hub's own lock files there, and the whole folder unless a partial
    download is left to resume."""
    for lock in files.staging.glob(".cache/huggingface/**/*.lock"):
        lock.unlink(missing_ok=True)
    if not any(files.partials.glob("*.incomplete")):
        shutil.rmtree(files.staging, ignore_errors=True)


# -- local files -------------------------------------------------------------------------------------


def _install_local_candidates(files: LoraFiles, log) -> bool:
    """Accept a hand-placed file, or finish an install a crashed process left half-done."""
    final = files.target
    verification = files.verify_on_disk()
    if verification is not None:
        if verification.ok:
            log(f"LCM-LoRA: {final} verified ({_how(files, verification)})")
            return True
        rejected = files.verifying.with_suffix(".rejected")
        log(f"LCM-LoRA: {final} is not the expected file ({verification.problem}); moved to {rejected}")
        _replace(final, rejected)
    for leftover in (files.verifying, files.staging / files.entry.filename):
        if leftover.is_file():
            try:
                _install(files, leftover, log, source=str(leftover))
                return True
            except WeightsVerificationError:
                pass  # _install discarded it
    return False


def _install(files: LoraFiles, staged: Path, log, source: str) -> Verification:
    """Verify ``staged`` under a name the WebUI never lists, then rename it into place atomically."""
    part = files.verifying
    if staged != part:
        _replace(staged, part)
    verification = verify_file(files.entry, part)
    if not verification.ok:
        part.unlink(missing_ok=True)
        raise WeightsVerificationError(
            f"the {files.entry.stem} bytes from {source} failed verification: {verification.problem}. Nothing "
            "was installed and the bytes were discarded. Check HF_ENDPOINT / LCM_LORA_REGISTRY if you use a "
            f"mirror, or retry later. {files.manual_download_hint()}"
        )
    _replace(part, files.target)
    files.remember_verified(verification)
    log(f"LCM-LoRA: installed {files.target} ({_how(files, verification)})")
    return verification


def _how(files: LoraFiles, verification: Verification) -> str:
    if verification.method == "sha256":
        return "sha256 verified"
    mirror = " (matches the hash seen on mirrors)" if verification.sha256 == files.entry.unconfirmed_sha256 else ""
    return f"safetensors header checked; sha256 {verification.sha256}{mirror} recorded but not confirmed"


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise filesystem_error(exc, "moving to", dst) from None


def _remove_stale_partials(files: LoraFiles, etag: str | None) -> None:
    """Drop partial files no download can continue (held lock: nobody is writing them).

    huggingface_hub 0.x names a resumable partial ``<hash>.<etag>.incomplete``; 1.x/2.x add a
    process-unique part, which a killed process leaves behind for good.
    """
    for path in files.partials.glob("*.incomplete"):
        parts = path.name.split(".")
        if len(parts) != 3 or (etag and parts[1] != etag):
            path.unlink(missing_ok=True)


def _check_disk_space(files: LoraFiles, total: int | None) -> None:
    if not total:
        return
    folder = files.staging.parent
    needed = total - files.partial_bytes() + _DISK_MARGIN
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WeightsDiskFullError(
            f"{files.entry.stem} needs {megabytes(needed)} in {folder} but only {megabytes(free)} are free; "
            "free some space or point --lora-dir at another disk."
        )


# -- network -----------------------------------------------------------------------------------------


def _probe(files: LoraFiles, endpoint, token, timeout: float):
    """One HEAD without retries: fail in ``timeout`` seconds instead of huggingface_hub's ~23 s backoff.

    Returns (size, etag) as the hub reports them (None where absent). Any 2xx/3xx answer means reachable;
    hf_hub_download then follows relative redirects (renamed repos) itself.
    """
    hub = import_hub()
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    entry = files.entry
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
        try:
            response = http_backoff(
                "HEAD", url, headers=headers, timeout=timeout, max_retries=0, retry_on_status_codes=(), **no_redirects
            )
        except Exception as exc:  # no answer at all: no other file can be fetched either
            raise unreachable_error(exc, files, endpoint, timeout) from exc
        hf_raise_for_status(response)
    except WeightsError:
        raise
    except Exception as exc:
        raise as_weights_error(exc, files, endpoint, timeout) from exc
    finally:
        http_logger.setLevel(level)
    head = response.headers
    size = head.get("X-Linked-Size") or (None if 300 <= response.status_code < 400 else head.get("Content-Length"))
    etag = (head.get("X-Linked-Etag") or head.get("ETag") or "").removeprefix("W/").strip('"') or None
    return (int(size) if size and size.isdigit() else None), etag


def _download(files: LoraFiles, endpoint, token, timeout, retries, cache_dir, log) -> str:
    hub = import_hub()
    entry = files.entry
    kwargs = dict(
        repo_id=entry.repo_id,
        filename=entry.filename,
        revision=entry.revision,
        local_dir=str(files.staging),
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
            error = as_weights_error(exc, files, endpoint, timeout)
            if not isinstance(error, WeightsNetworkError) or isinstance(error, WeightsOfflineError) or attempt == retries:
                raise error from exc
            log(f"LCM-LoRA: transfer of {entry.stem} interrupted ({first_line(exc)}); retrying")
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
