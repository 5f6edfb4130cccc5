"""What can go wrong with the LCM-LoRA weights: one exception class per fix, each with the CLI's exit code.

Standard library only (install.py imports it at every WebUI launch). Every message names the fix.
"""
from __future__ import annotations

import errno


class WeightsError(Exception):
    """A weights problem with a message that names the fix. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class WeightsRegistryError(WeightsError):
    """The registry JSON is unreadable or invalid, or a variant id is unknown."""

    exit_code = 2


class WeightsNetworkError(WeightsError):
    """The hub could not be reached or answered with a server error; retrying later may work."""

    exit_code = 3


class WeightsOfflineError(WeightsNetworkError):
    """``HF_HUB_OFFLINE`` is set and the file is not on disk."""


class WeightsDownloadDisabledError(WeightsOfflineError):
    """The file is not on disk and the caller did not allow a download (``allow_download=False``)."""


class WeightsTimeoutError(WeightsNetworkError):
    """The hub did not answer within the timeout."""


class WeightsNotFoundError(WeightsError):
    """The repo, revision or file does not exist (moved or deleted repo), or it needs a token."""

    exit_code = 4


class WeightsVerificationError(WeightsError):
    """The bytes do not match the registry (sha256, size or safetensors header)."""

    exit_code = 5


class WeightsFilesystemError(WeightsError):
    """The target folder cannot be written."""

    exit_code = 6


class WeightsPermissionError(WeightsFilesystemError):
    """Read-only folder or missing permission (EACCES, EPERM, EROFS)."""


class WeightsDiskFullError(WeightsFilesystemError):
    """No space left on the device (ENOSPC, EDQUOT)."""


class WeightsBusyError(WeightsError):
    """Another process held the download lock for longer than the lock timeout."""

    exit_code = 7


def filesystem_error(exc: OSError, what: str, path, hint: str = "") -> WeightsError:
    """Map an OSError from writing ``path`` to the WeightsError that names the fix."""
    code = getattr(exc, "errno", None)
    tail = f" {hint}" if hint else ""
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return WeightsDiskFullError(f"no space left on the device while {what} {path}; free some space.{tail}")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(exc, PermissionError):
        return WeightsPermissionError(
            f"cannot write {path} ({exc.strerror or exc}): the folder is read-only or not yours; "
            f"make it writable or point --lora-dir at a writable folder.{tail}"
        )
    return WeightsFilesystemError(f"error while {what} {path}: {exc.strerror or exc}.{tail}")
