"""Whatever huggingface_hub, requests, httpx or the OS raised while fetching a file, as the WeightsError
that names the fix.

huggingface_hub is only looked up in ``sys.modules`` here (``import_hub`` imports it on purpose): the
translation works for every version from 0.2x to 2.x, whose exception classes moved between modules.
"""
from __future__ import annotations

import errno
import sys

from lib_lcm.weights.errors import (
    WeightsError,
    WeightsNetworkError,
    WeightsNotFoundError,
    WeightsOfflineError,
    WeightsTimeoutError,
    filesystem_error,
)
from lib_lcm.weights.lora_files import LoraFiles
from lib_lcm.weights.registry import DEFAULT_ENDPOINT

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

_CONNECTION_ERRORS = {"ConnectionError", "ConnectError", "NetworkError", "RemoteProtocolError",
                      "ChunkedEncodingError", "ProtocolError", "TransportError", "LocalEntryNotFoundError"}


def import_hub():
    """``huggingface_hub``, or a WeightsError saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsError(
            "huggingface_hub is not installed in this Python; install it with `pip install huggingface_hub` "
            "(the WebUI's venv ships it)."
        ) from None
    return huggingface_hub


def first_line(exc: BaseException) -> str:
    """A short reason for ``exc``: a known cause in words, else its type and first line."""
    text = str(exc).strip()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    text = text.splitlines()[0] if text else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unreachable_error(exc: BaseException, files: LoraFiles, endpoint, timeout) -> WeightsError:
    """``as_weights_error`` for a request that got no answer at all (timeout, refused, DNS, unreachable network,
    TLS): such a network error is marked so that ``hub_unreachable`` returns its short reason, because every
    other file would fail the same way."""
    error = as_weights_error(exc, files, endpoint, timeout)
    if isinstance(error, WeightsNetworkError) and not isinstance(error, WeightsOfflineError):
        if isinstance(error, WeightsTimeoutError):
            error.hub_unreachable = f"no answer within {timeout:g} s"
        else:
            known = (reason for cause in _chain(exc) for needle, reason in _REASONS if needle in str(cause))
            error.hub_unreachable = next(known, first_line(exc))
    return error


def hub_unreachable(error: BaseException) -> str | None:
    """The short reason ("connection refused", ...) when ``error`` says the hub could not be reached at all."""
    return getattr(error, "hub_unreachable", None)


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


def as_weights_error(exc: BaseException, files: LoraFiles, endpoint, timeout) -> WeightsError:
    """Translate ``exc`` (and its causes, outermost first) into a WeightsError for ``files``."""
    hint = files.manual_download_hint(endpoint)
    for cause in _chain(exc):
        error = _translate(cause, files, endpoint, timeout, hint)
        if error is not None:
            return error
    where = _where(files)
    if isinstance(exc, OSError):
        return filesystem_error(exc, "downloading into", files.staging, hint)
    return WeightsError(f"unexpected error while downloading {where}: {first_line(exc)}. {hint}")


def _where(files: LoraFiles) -> str:
    entry = files.entry
    return f"{entry.repo_id}@{entry.revision}/{entry.filename}"


def _translate(cause: BaseException, files: LoraFiles, endpoint, timeout, hint: str) -> WeightsError | None:
    """The WeightsError for one exception of the chain, or None when it says nothing we recognise."""
    types = _hub_error_types()

    def is_a(*names):
        return any(types.get(n) is not None and isinstance(cause, types[n]) for n in names)

    where, host = _where(files), endpoint or DEFAULT_ENDPOINT
    if isinstance(cause, WeightsError):
        return cause
    if is_a("OfflineModeIsEnabled"):
        return WeightsOfflineError(f"{files.entry.stem} is not installed and HF_HUB_OFFLINE is set. {hint}")
    if is_a("GatedRepoError"):
        return WeightsNotFoundError(f"{where} needs a Hugging Face login: set HF_TOKEN. {hint}")
    missing = next((what for name, what in _NOT_FOUND if is_a(name)), None)
    if missing:
        return WeightsNotFoundError(
            f"{where} was not found on {host} ({missing}: moved or deleted, or private without HF_TOKEN). "
            f"Update the extension, or point LCM_LORA_REGISTRY at a registry with the new location. {hint}"
        )
    if is_a("HfHubHTTPError"):
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if status in (401, 403, 404):
            return WeightsNotFoundError(f"{where}: the hub answered HTTP {status}. {hint}")
        return WeightsNetworkError(f"the hub answered HTTP {status} for {where}; it may be down, retry later. {hint}")
    names = {t.__name__ for t in type(cause).__mro__}
    if any("Timeout" in n for n in names) or isinstance(cause, TimeoutError):
        return WeightsTimeoutError(
            f"the hub did not answer within {timeout:g} s while fetching {where}; check the network "
            f"or proxy (HF_ENDPOINT, HTTPS_PROXY; HF_HUB_DISABLE_XET=1 if Xet hosts are blocked). {hint}"
        )
    if isinstance(cause, OSError) and cause.errno in (
        errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EACCES, errno.EPERM, errno.EROFS
    ):
        return filesystem_error(cause, "downloading into", files.staging)
    if names & _CONNECTION_ERRORS:
        return WeightsNetworkError(
            f"could not download {where} from {host} ({first_line(cause)}); check the network or proxy, "
            f"or retry later (HF_HUB_DISABLE_XET=1 if Xet hosts are blocked). {hint}"
        )
    if isinstance(cause, OSError) and "size" in str(cause).lower() and "consistency" in str(cause).lower():
        return WeightsNetworkError(f"the transfer of {where} was incomplete ({first_line(cause)}). {hint}")
    return None
