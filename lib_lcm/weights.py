"""LCM-LoRA weights: the registry, where the files go, and what was verified.

Pure standard library on purpose: install.py imports this module at every WebUI launch and must stay
well under 0.3 s, so nothing here imports torch, safetensors or huggingface_hub.

Layout under the WebUI's Lora folder (the WebUI lists ``.pt .ckpt .safetensors`` recursively, hidden
folders included, and resolves ``<lora:NAME>`` by file stem)::

    <lora_dir>/LCM-LoRA/<stem>.safetensors      the LoRA, only ever written by os.replace after verification
    <lora_dir>/LCM-LoRA/<stem>.json             Lora-tab card metadata ("sd version", description, ...)
    <lora_dir>/LCM-LoRA/.state/<stem>.record.json   size, mtime_ns and sha256 of the verified file
    <lora_dir>/LCM-LoRA/.state/<variant>.lock       cross-process download lock
    <lora_dir>/LCM-LoRA/.state/<variant>/           huggingface_hub ``local_dir`` staging (``*.incomplete``)

The registry (``weights_registry.json`` next to this file, or the JSON file named by ``LCM_LORA_REGISTRY``)
maps a variant id to a Hugging Face repo file. Schema (per variant, unknown keys are ignored):

- ``repo_id`` (str, ``owner/name``), ``filename`` (str, ``*.safetensors``), ``revision`` (str: a 40-hex
  commit or a branch name), ``stem`` (str: the file name under ``LCM-LoRA/`` without ``.safetensors``).
- ``size`` (int or null), ``sha256`` (64 hex or null).
- ``verified`` (bool): true only when revision, size and sha256 were confirmed; then all three are
  required and the downloaded bytes must match them. False: the file is accepted when its safetensors
  header holds LoRA tensors whose cross-attention width equals ``context_dim``.
- ``sd_version`` ("SD1", "SD2", "SDXL"), ``context_dim`` (int), ``architectures`` (list of
  lib_lcm.architecture labels), ``title``, ``license``, ``note``, ``unconfirmed_sha256`` (informational).
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import shlex
import struct
import time
from dataclasses import dataclass
from pathlib import Path

REGISTRY_ENV = "LCM_LORA_REGISTRY"
DOWNLOAD_MODE_ENV = "LCM_LORA_DOWNLOAD"
DEFAULT_ENDPOINT = "https://huggingface.co"
SUBFOLDER = "LCM-LoRA"
STATE_FOLDER = ".state"
SCHEMA_VERSION = 1
SD_VERSIONS = ("SD1", "SD2", "SDXL", "Unknown")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_STEM = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LORA_SUFFIXES = ("lora_down.weight", "lora_up.weight", "alpha")
_MAX_HEADER_BYTES = 100 * 1024 * 1024


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


@dataclass(frozen=True)
class WeightsEntry:
    """One registry variant; see the module docstring for the meaning of each field."""

    variant: str
    repo_id: str
    filename: str
    revision: str
    stem: str
    size: int | None
    sha256: str | None
    verified: bool
    sd_version: str
    context_dim: int | None
    architectures: tuple[str, ...] = ()
    title: str = ""
    license: str = ""
    note: str = ""
    unconfirmed_sha256: str | None = None

    def url(self, endpoint: str | None = None) -> str:
        """The file's resolve URL on ``endpoint`` (default: ``HF_ENDPOINT`` or huggingface.co)."""
        base = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        return f"{base}/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def file_name(self) -> str:
        return f"{self.stem}.safetensors"


def default_registry_path() -> Path:
    return Path(__file__).with_name("weights_registry.json")


def load_registry(path: str | os.PathLike | None = None, environ=None) -> dict[str, WeightsEntry]:
    """Read and validate a registry file: ``path``, else ``$LCM_LORA_REGISTRY``, else the shipped one.

    Raises WeightsRegistryError naming the file and the offending field.
    """
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(REGISTRY_ENV) or default_registry_path())
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeightsRegistryError(f"cannot read the LCM-LoRA registry {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise WeightsRegistryError(f"the LCM-LoRA registry {path} is not valid JSON: {exc}") from None
    return parse_registry(data, source=str(path))


def parse_registry(data, source: str = "registry") -> dict[str, WeightsEntry]:
    def bad(msg):
        return WeightsRegistryError(f"{source}: {msg} (schema: see docs/weights.md)")

    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict) or not data["variants"]:
        raise bad('expected an object with a non-empty "variants" object')
    if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise bad(f"schema_version {data.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
    entries = {}
    for variant, raw in data["variants"].items():
        if not _VARIANT.match(variant) or not isinstance(raw, dict):
            raise bad(f"variant {variant!r}: ids are lower-case [a-z0-9_-] mapping to objects")
        entries[variant] = _parse_entry(variant, raw, bad)
    stems = [e.stem.lower() for e in entries.values()]
    if len(set(stems)) != len(stems):
        raise bad("two variants share a stem; the WebUI resolves <lora:NAME> by stem, so stems must be unique")
    return entries


def _parse_entry(variant, raw, bad) -> WeightsEntry:
    def field(name, kind, required=True):
        value = raw.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise bad(f"{variant}.{name} must be {kind.__name__}, got {value!r}")
        return value

    repo_id, filename = field("repo_id", str), field("filename", str)
    revision, stem = field("revision", str), field("stem", str)
    size, sha256 = field("size", int, required=False), field("sha256", str, required=False)
    verified = field("verified", bool)
    sd_version = field("sd_version", str)
    context_dim = field("context_dim", int, required=False)
    if not _REPO_ID.match(repo_id):
        raise bad(f"{variant}.repo_id {repo_id!r} is not owner/name")
    if not filename.lower().endswith(".safetensors") or ".." in filename.split("/"):
        raise bad(f"{variant}.filename {filename!r}: only .safetensors files are ever downloaded")
    if not _STEM.match(stem) or stem.lower().endswith(".safetensors"):
        raise bad(f"{variant}.stem {stem!r} must be a plain file name without extension")
    if not revision or any(c.isspace() for c in revision):
        raise bad(f"{variant}.revision {revision!r} must be a commit hash or a branch name")
    if size is not None and size <= 0:
        raise bad(f"{variant}.size must be positive")
    if sha256 is not None and not _HEX64.match(sha256):
        raise bad(f"{variant}.sha256 must be 64 lower-case hex digits")
    if verified and (sha256 is None or size is None or not _HEX40.match(revision)):
        raise bad(f'{variant}: "verified": true needs sha256, size and a 40-hex commit revision')
    if sd_version not in SD_VERSIONS:
        raise bad(f"{variant}.sd_version must be one of {', '.join(SD_VERSIONS)}")
    architectures = raw.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise bad(f"{variant}.architectures must be a list of strings")
    unconfirmed = raw.get("unconfirmed_sha256")
    return WeightsEntry(
        variant=variant,
        repo_id=repo_id,
        filename=filename,
        revision=revision,
        stem=stem,
        size=size,
        sha256=sha256,
        verified=verified,
        sd_version=sd_version,
        context_dim=context_dim,
        architectures=tuple(architectures),
        title=str(raw.get("title") or variant),
        license=str(raw.get("license") or ""),
        note=str(raw.get("note") or ""),
        unconfirmed_sha256=unconfirmed if isinstance(unconfirmed, str) and _HEX64.match(unconfirmed) else None,
    )


def get_entry(variant: str, registry: dict[str, WeightsEntry] | None = None) -> WeightsEntry:
    registry = load_registry() if registry is None else registry
    try:
        return registry[variant]
    except KeyError:
        raise WeightsRegistryError(
            f"unknown LCM-LoRA variant {variant!r}; known: {', '.join(registry)}"
        ) from None


# -- paths -------------------------------------------------------------------------------------------


def lcm_folder(lora_dir) -> Path:
    return Path(lora_dir) / SUBFOLDER


def state_folder(lora_dir) -> Path:
    return lcm_folder(lora_dir) / STATE_FOLDER


def target_path(entry: WeightsEntry, lora_dir) -> Path:
    return lcm_folder(lora_dir) / entry.file_name


def sidecar_path(entry: WeightsEntry, lora_dir) -> Path:
    return lcm_folder(lora_dir) / f"{entry.stem}.json"


def record_path(entry: WeightsEntry, lora_dir) -> Path:
    return state_folder(lora_dir) / f"{entry.stem}.record.json"


def lock_path(entry: WeightsEntry, lora_dir) -> Path:
    return state_folder(lora_dir) / f"{entry.variant}.lock"


def staging_dir(entry: WeightsEntry, lora_dir) -> Path:
    """huggingface_hub ``local_dir``: partial bytes live in ``.cache/huggingface/download/*.incomplete``."""
    return state_folder(lora_dir) / entry.variant


def verifying_path(entry: WeightsEntry, lora_dir) -> Path:
    """Where downloaded bytes wait for verification: an extension the WebUI never lists."""
    return state_folder(lora_dir) / f"{entry.stem}.part"


def partial_bytes(entry: WeightsEntry, lora_dir) -> int:
    """Size of the largest partial download of ``entry`` (0 when none)."""
    folder = staging_dir(entry, lora_dir) / ".cache" / "huggingface" / "download"
    try:
        return max((p.stat().st_size for p in folder.glob("*.incomplete")), default=0)
    except OSError:
        return 0


def manual_download_hint(entry: WeightsEntry, lora_dir, endpoint: str | None = None) -> str:
    """One sentence telling the user how to install ``entry`` by hand."""
    if entry.sha256 and entry.size:
        expect = f"{entry.size} bytes, sha256 {entry.sha256}"
    else:
        expect = "size and sha256 not confirmed; it is checked by its safetensors header"
    return (
        f"To install it by hand, download {entry.url(endpoint)} and save it as "
        f"{target_path(entry, lora_dir)} ({expect})."
    )


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


def make_folders(lora_dir) -> Path:
    """Create ``LCM-LoRA/.state``; raise WeightsFilesystemError (read-only, disk full, not a folder)."""
    folder = state_folder(lora_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise filesystem_error(exc, "creating", folder) from None
    return folder


# -- verification ------------------------------------------------------------------------------------


def sha256_file(path, chunk_size: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def read_safetensors_header(path) -> dict:
    """The JSON header of a safetensors file, checked against the file size (catches truncation).

    Raises ValueError with a reason when the file is not a complete safetensors file. Reads only the
    header: nothing is unpickled and no tensor is loaded.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(_MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"header length {length} does not fit a {size}-byte file")
        try:
            header = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ValueError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
            shape = [int(d) for d in info["shape"]]
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"tensor {name!r} has no valid shape/data_offsets") from None
        if not 0 <= start <= stop or not all(d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r} has invalid offsets or shape")
        end = max(end, stop)
    if 8 + length + end != size:
        raise ValueError(f"tensor data needs {8 + length + end} bytes but the file has {size} (truncated?)")
    return header


def lora_header_problems(entry: WeightsEntry, header: dict) -> list[str]:
    """Why ``header`` is not an A1111-loadable UNet LoRA for ``entry``'s architecture ([] when it is)."""
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        return ["no tensors"]
    problems = []
    foreign = [k for k in tensors if not (k.startswith(("lora_unet_", "lora_te")) and k.partition(".")[2] in _LORA_SUFFIXES)]
    if foreign:
        problems.append(f"{len(foreign)} tensors are not LoRA weights, e.g. {foreign[0]!r}")
    if not any(k.startswith("lora_unet_") for k in tensors):
        problems.append("no lora_unet_* tensors")
    if entry.context_dim:
        widths = {tuple(v["shape"])[-1] for k, v in tensors.items() if k.endswith("attn2_to_k.lora_down.weight")}
        if not widths:
            problems.append("no cross-attention (attn2_to_k) LoRA weights")
        elif widths != {entry.context_dim}:
            problems.append(
                f"cross-attention width {sorted(widths)} does not match {entry.context_dim} "
                f"({entry.sd_version}); this is a LoRA for another architecture"
            )
    return problems


@dataclass(frozen=True)
class Verification:
    """Outcome of checking a file against its registry entry. ``method`` is "sha256" or "header"."""

    ok: bool
    method: str
    sha256: str | None
    size: int
    problem: str = ""


def verify_file(entry: WeightsEntry, path) -> Verification:
    """Hash and check ``path`` against ``entry`` (reads the whole file once)."""
    size = os.path.getsize(path)
    method = "sha256" if entry.sha256 else "header"
    if entry.size is not None and size != entry.size:
        return Verification(False, method, None, size, f"size is {size} bytes, expected {entry.size}")
    digest = sha256_file(path)
    if entry.sha256:
        if digest != entry.sha256:
            return Verification(False, method, digest, size, f"sha256 is {digest}, expected {entry.sha256}")
        return Verification(True, method, digest, size)
    try:
        problems = lora_header_problems(entry, read_safetensors_header(path))
    except ValueError as exc:
        problems = [f"not a complete safetensors file: {exc}"]
    if problems:
        return Verification(False, method, digest, size, "; ".join(problems))
    return Verification(True, method, digest, size)


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise filesystem_error(exc, "writing", path) from None


def _entry_identity(entry: WeightsEntry) -> dict:
    return {"repo_id": entry.repo_id, "filename": entry.filename, "sha256": entry.sha256, "size": entry.size}


def write_record(entry: WeightsEntry, lora_dir, verification: Verification) -> None:
    """Remember that the file now at the target path was verified, so launches need not rehash it."""
    st = target_path(entry, lora_dir).stat()
    write_json_atomic(
        record_path(entry, lora_dir),
        {
            "file": entry.file_name,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": verification.sha256,
            "method": verification.method,
            "entry": _entry_identity(entry),
        },
    )


def read_record(entry: WeightsEntry, lora_dir) -> dict | None:
    try:
        record = json.loads(record_path(entry, lora_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_verification(entry: WeightsEntry, lora_dir) -> str | None:
    """The method ("sha256"/"header") by which the file on disk was verified, or None.

    None when the file is missing, was never verified, changed since (size or mtime differ), or the
    registry entry changed. Costs one stat and one small JSON read: no hashing.
    """
    record = read_record(entry, lora_dir)
    if not record or record.get("entry") != _entry_identity(entry):
        return None
    try:
        st = target_path(entry, lora_dir).stat()
    except OSError:
        return None
    if st.st_size != record.get("size") or st.st_mtime_ns != record.get("mtime_ns"):
        return None
    method = record.get("method")
    if method == "sha256" and record.get("sha256") == entry.sha256 and entry.sha256:
        return method
    if method == "header" and not entry.sha256:
        return method
    return None


def is_installed(entry: WeightsEntry, lora_dir) -> bool:
    return recorded_verification(entry, lora_dir) is not None


def sidecar_metadata(entry: WeightsEntry) -> dict:
    """What the WebUI Lora tab reads from ``<stem>.json`` (keys of A1111's ui_edit_user_metadata.py)."""
    revision = entry.revision[:8] if _HEX40.match(entry.revision) else entry.revision
    licence = f", licence {entry.license}" if entry.license else ""
    return {
        "description": (
            f"{entry.title}: https://huggingface.co/{entry.repo_id} @ {revision}{licence}. "
            "Installed by sd-webui-lcm-lora; use with the LCM sampler, 2-8 steps, CFG 1-2."
        ),
        "sd version": entry.sd_version,
        "activation text": "",
        "preferred weight": 1.0,
        "negative text": "",
        "notes": entry.note,
    }


def write_sidecar(entry: WeightsEntry, lora_dir) -> bool:
    """Write ``<stem>.json`` unless it exists (the user may have edited it in the Lora tab).

    Best effort: a read-only Lora folder holding a good file must not make the file unusable, so this
    returns False instead of raising.
    """
    path = sidecar_path(entry, lora_dir)
    if path.exists():
        return True
    try:
        write_json_atomic(path, sidecar_metadata(entry))
    except WeightsError:
        return False
    return True


def remember_verified(entry: WeightsEntry, lora_dir, verification: Verification) -> bool:
    """Record the verification and write the card; False where the folder is read-only (the file is
    still good, it is simply hashed again next time)."""
    try:
        make_folders(lora_dir)
        write_record(entry, lora_dir, verification)
    except (WeightsError, OSError):
        write_sidecar(entry, lora_dir)
        return False
    return write_sidecar(entry, lora_dir)


def weights_status(lora_dir, registry: dict[str, WeightsEntry] | None = None) -> list[dict]:
    """One dict per registry variant, cheap enough for an HTTP status endpoint (no hashing).

    Keys: variant, title, stem, path, installed (file present), verified (a verification record matches
    the file as it is now), verification ("sha256", "header" or None), size (bytes on disk or None),
    expected_size, sha256 (recorded), expected_sha256, sha256_known, repo_id, revision, url,
    partial_bytes (bytes of an unfinished download).
    """
    registry = load_registry() if registry is None else registry
    rows = []
    for entry in registry.values():
        path = target_path(entry, lora_dir)
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        method = recorded_verification(entry, lora_dir)
        record = read_record(entry, lora_dir) if method else None
        rows.append(
            {
                "variant": entry.variant,
                "title": entry.title,
                "stem": entry.stem,
                "path": str(path),
                "installed": size is not None,
                "verified": method is not None,
                "verification": method,
                "size": size,
                "expected_size": entry.size,
                "sha256": record.get("sha256") if record else None,
                "expected_sha256": entry.sha256,
                "sha256_known": entry.sha256 is not None,
                "repo_id": entry.repo_id,
                "revision": entry.revision,
                "url": entry.url(),
                "partial_bytes": partial_bytes(entry, lora_dir),
            }
        )
    return rows


# -- where the WebUI keeps things (install.py and the CLI only see COMMANDLINE_ARGS) -----------------


@dataclass(frozen=True)
class WebuiDirs:
    lora_dir: Path
    checkpoint_dirs: tuple[Path, ...]


def webui_dirs(extension_dir, commandline_args: str | None = None, environ=None) -> WebuiDirs:
    """The Lora and checkpoint folders the WebUI will use, as A1111 1.10 derives them.

    Mirrors modules/paths_internal.py, cmd_args.py and extensions-builtin/Lora/preload.py: flags come
    from ``COMMANDLINE_ARGS`` (shlex-split); data dir defaults to the WebUI root, models dir to
    ``<data>/models``, Lora dir to ``<models>/Lora``. Flags given on the launch command line itself are
    invisible to install.py: the data dir is then read off the extension's own location
    (``<data>/extensions/<name>``); the WebUI glue passes ``shared.cmd_opts.lora_dir`` instead.
    """
    environ = os.environ if environ is None else environ
    if commandline_args is None:
        commandline_args = environ.get("COMMANDLINE_ARGS", "")
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--data-dir", "--models-dir", "--ckpt-dir", "--lora-dir"):
        parser.add_argument(flag, default=None)
    try:
        args, _ = parser.parse_known_args(shlex.split(commandline_args))
    except (ValueError, SystemExit):
        args = parser.parse_args([])
    data_dir = Path(args.data_dir).absolute() if args.data_dir else _webui_root(extension_dir, environ)
    models_dir = Path(args.models_dir).absolute() if args.models_dir else data_dir / "models"
    lora_dir = Path(args.lora_dir).absolute() if args.lora_dir else models_dir / "Lora"
    checkpoint_dirs = [models_dir / "Stable-diffusion"]
    if args.ckpt_dir:
        checkpoint_dirs.append(Path(args.ckpt_dir).absolute())
    return WebuiDirs(lora_dir, tuple(checkpoint_dirs))


def _webui_root(extension_dir, environ) -> Path:
    # The WebUI keeps extensions in <data dir>/extensions, with or without --data-dir: where this extension
    # sits tells the data dir even when --data-dir was typed on the launch command line (invisible here).
    extension_dir = Path(extension_dir).absolute()
    if extension_dir.parent.name == "extensions":
        return extension_dir.parents[1]
    # Elsewhere (a dev checkout): launch_utils puts the WebUI root first on PYTHONPATH.
    for entry in environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and (Path(entry) / "modules" / "paths_internal.py").is_file():
            return Path(entry).absolute()
    return extension_dir.parents[1]


def parse_variants(value: str, registry: dict[str, WeightsEntry]) -> list[str] | None:
    """``LCM_LORA_DOWNLOAD`` / ``--variant``: None for "auto", [] for "none", else variant ids.

    Accepts "auto", "all", "none" or a comma list of registry ids; raises WeightsRegistryError otherwise.
    """
    words = [w.strip().lower() for w in (value or "auto").split(",") if w.strip()]
    if not words or words == ["auto"]:
        return None
    if words == ["all"]:
        return list(registry)
    if words in (["none"], ["off"], ["0"]):
        return []
    unknown = [w for w in words if w not in registry]
    if unknown:
        raise WeightsRegistryError(
            f"unknown LCM-LoRA variant {', '.join(unknown)}: use auto, all, none or a comma list of "
            f"{', '.join(registry)}"
        )
    return list(dict.fromkeys(words))


def list_checkpoints(checkpoint_dirs, limit: int = 2000) -> list[Path]:
    """``*.safetensors`` under the checkpoint folders, like the WebUI's recursive model listing."""
    found = []
    for folder in checkpoint_dirs:
        for root, _, files in os.walk(folder, followlinks=True):
            found += [Path(root) / f for f in files if f.lower().endswith(".safetensors")]
            if len(found) >= limit:
                return found[:limit]
    return found


def variants_for_checkpoints(checkpoint_dirs, registry, cache_path=None, detect=None, variant_for=None,
                             time_budget: float = 10.0) -> list[str]:
    """The LCM-LoRA variants the user's checkpoints need (safetensors headers only); ["sd15"] if none.

    ``detect(path) -> label`` and ``variant_for(label)`` default to lib_lcm.architecture. Labels are
    cached in ``cache_path`` by (path, size, mtime_ns) so launches do not re-read unchanged headers.
    Headers not read within ``time_budget`` seconds (huge collections on slow disks) are left for the
    next launch.
    """
    if detect is None or variant_for is None:
        from lib_lcm import architecture

        detect = detect or architecture.detect_checkpoint
        variant_for = variant_for or architecture.lcm_variant_for
    cache = {}
    if cache_path is not None:
        try:
            cache = json.loads(Path(cache_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
    labels, fresh = {}, {}
    deadline = time.monotonic() + time_budget
    for path in list_checkpoints(checkpoint_dirs):
        try:
            st = path.stat()
        except OSError:
            continue
        key = str(path)
        hit = cache.get(key) if isinstance(cache, dict) else None
        if isinstance(hit, list) and hit[:2] == [st.st_size, st.st_mtime_ns]:
            label = hit[2]
        elif time.monotonic() > deadline:
            continue
        else:
            try:
                label = detect(path)
            except Exception:  # an unreadable or exotic checkpoint must not stop the launch
                label = "unknown"
        labels[key] = label
        fresh[key] = [st.st_size, st.st_mtime_ns, label]
    if cache_path is not None and fresh != cache:
        try:
            write_json_atomic(Path(cache_path), fresh)
        except WeightsError:
            pass
    wanted = []
    for label in labels.values():
        variant = variant_for(label)
        if variant in registry and variant not in wanted:
            wanted.append(variant)
    if not wanted and "sd15" in registry:
        wanted = ["sd15"]
    return wanted
