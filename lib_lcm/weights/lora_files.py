"""Where a variant's files live in the WebUI's Lora folder, and what is remembered about them.

Standard library only: install.py checks the records at every WebUI launch (a stat and a small JSON read,
no hashing).

Layout under the WebUI's Lora folder (the WebUI lists ``.pt .ckpt .safetensors`` recursively, hidden
folders included, and resolves ``<lora:NAME>`` by file stem)::

    <lora_dir>/LCM-LoRA/<stem>.safetensors      the LoRA, only ever written by os.replace after verification
    <lora_dir>/LCM-LoRA/<stem>.json             Lora-tab card metadata ("sd version", description, ...)
    <lora_dir>/LCM-LoRA/.state/<stem>.record.json   size, mtime_ns and sha256 of the verified file
    <lora_dir>/LCM-LoRA/.state/<stem>.part          downloaded bytes while they are verified
    <lora_dir>/LCM-LoRA/.state/<variant>.lock       cross-process download lock (only while a download runs)
    <lora_dir>/LCM-LoRA/.state/<variant>/           huggingface_hub ``local_dir`` staging (``*.incomplete``)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lib_lcm.params import SAMPLER_LCM, SAMPLER_TCD
from lib_lcm.weights.errors import WeightsError, filesystem_error
from lib_lcm.weights.registry import HEX40, Registry, WeightsEntry, current_registry
from lib_lcm.weights.verification import Verification, verify_file

SUBFOLDER = "LCM-LoRA"
STATE_FOLDER = ".state"


def lcm_folder(lora_dir) -> Path:
    return Path(lora_dir) / SUBFOLDER


def state_folder(lora_dir) -> Path:
    return lcm_folder(lora_dir) / STATE_FOLDER


def make_folders(lora_dir) -> Path:
    """Create ``LCM-LoRA/.state``; raise WeightsFilesystemError (read-only, disk full, not a folder)."""
    folder = state_folder(lora_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise filesystem_error(exc, "creating", folder) from None
    return folder


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


def sidecar_metadata(entry: WeightsEntry) -> dict:
    """What the WebUI Lora tab reads from ``<stem>.json`` (keys of A1111's ui_edit_user_metadata.py)."""
    revision = entry.revision[:8] if HEX40.match(entry.revision) else entry.revision
    licence = f", licence {entry.license}" if entry.license else ""
    return {
        "description": (
            f"{entry.title}: https://huggingface.co/{entry.repo_id} @ {revision}{licence}. "
            f"Installed by sd-webui-lcm-lora; use with the {SAMPLER_LCM} sampler (or {SAMPLER_TCD}), 2-8 steps, CFG 1-2."
        ),
        "sd version": entry.sd_version,
        "activation text": "",
        "preferred weight": 1.0,
        "negative text": "",
        "notes": entry.note,
    }


def _entry_identity(entry: WeightsEntry) -> dict:
    return {"repo_id": entry.repo_id, "filename": entry.filename, "sha256": entry.sha256, "size": entry.size}


@dataclass(frozen=True)
class LoraFiles:
    """This variant's files in this Lora folder: the paths of the layout above and what is recorded."""

    entry: WeightsEntry
    lora_dir: Path

    def __post_init__(self):
        object.__setattr__(self, "lora_dir", Path(self.lora_dir))

    @property
    def folder(self) -> Path:
        return lcm_folder(self.lora_dir)

    @property
    def state(self) -> Path:
        return state_folder(self.lora_dir)

    @property
    def target(self) -> Path:
        return self.folder / self.entry.file_name

    @property
    def relative_name(self) -> str:
        """The file as the Lora folder names it (what answers show instead of the server's path)."""
        return f"{SUBFOLDER}/{self.entry.file_name}"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.entry.stem}.json"

    @property
    def record(self) -> Path:
        return self.state / f"{self.entry.stem}.record.json"

    @property
    def lock(self) -> Path:
        return self.state / f"{self.entry.variant}.lock"

    @property
    def staging(self) -> Path:
        """huggingface_hub ``local_dir``: partial bytes live in ``.cache/huggingface/download/*.incomplete``."""
        return self.state / self.entry.variant

    @property
    def partials(self) -> Path:
        """The folder of huggingface_hub's ``*.incomplete`` files under ``staging``."""
        return self.staging / ".cache" / "huggingface" / "download"

    @property
    def verifying(self) -> Path:
        """Where downloaded bytes wait for verification: an extension the WebUI never lists."""
        return self.state / f"{self.entry.stem}.part"

    def partial_bytes(self) -> int:
        """Size of the largest partial download (0 when none)."""
        try:
            return max((p.stat().st_size for p in self.partials.glob("*.incomplete")), default=0)
        except OSError:
            return 0

    def manual_download_hint(self, endpoint: str | None = None) -> str:
        """One sentence telling the user how to install the file by hand."""
        entry = self.entry
        if entry.sha256 and entry.size:
            expect = f"{entry.size} bytes, sha256 {entry.sha256}"
        else:
            expect = "size and sha256 not confirmed; it is checked by its safetensors header"
        return f"To install it by hand, download {entry.url(endpoint)} and save it as {self.target} ({expect})."

    def write_record(self, verification: Verification) -> None:
        """Remember that the file now at ``target`` was verified, so launches need not rehash it."""
        st = self.target.stat()
        write_json_atomic(
            self.record,
            {
                "file": self.entry.file_name,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": verification.sha256,
                "method": verification.method,
                "entry": _entry_identity(self.entry),
            },
        )

    def read_record(self) -> dict | None:
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def recorded_verification(self) -> str | None:
        """The method ("sha256"/"header") by which the file on disk was verified, or None.

        None when the file is missing, was never verified, changed since (size or mtime differ), or the
        registry entry changed. Costs one stat and one small JSON read: no hashing.
        """
        entry, record = self.entry, self.read_record()
        if not record or record.get("entry") != _entry_identity(entry):
            return None
        try:
            st = self.target.stat()
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

    def is_installed(self) -> bool:
        return self.recorded_verification() is not None

    def write_sidecar(self) -> bool:
        """Write ``<stem>.json`` unless it exists (the user may have edited it in the Lora tab).

        Best effort: a read-only Lora folder holding a good file must not make the file unusable, so this
        returns False instead of raising.
        """
        if self.sidecar.exists():
            return True
        try:
            write_json_atomic(self.sidecar, sidecar_metadata(self.entry))
        except WeightsError:
            return False
        return True

    def remember_verified(self, verification: Verification) -> bool:
        """Record the verification and write the card; False where the folder is read-only (the file is
        still good, it is simply hashed again next time)."""
        try:
            make_folders(self.lora_dir)
            self.write_record(verification)
        except (WeightsError, OSError):
            self.write_sidecar()
            return False
        return self.write_sidecar()

    def verify_on_disk(self) -> Verification | None:
        """Hash the file at the target (placed by hand, changed, or never recorded) and remember it when it is
        good; None when there is no file. Reads the whole file once, never the network."""
        if not self.target.is_file():
            return None
        verification = verify_file(self.entry, self.target)
        if verification.ok:
            self.remember_verified(verification)
        return verification

    def status_row(self) -> dict:
        """This variant's row of ``weights_status`` (no hashing)."""
        entry = self.entry
        try:
            size = self.target.stat().st_size
        except OSError:
            size = None
        method = self.recorded_verification()
        record = self.read_record() if method else None
        return {
            "variant": entry.variant,
            "family": entry.family,
            "title": entry.title,
            "stem": entry.stem,
            "path": str(self.target),
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
            "partial_bytes": self.partial_bytes(),
        }


def weights_status(lora_dir, registry: Registry | None = None) -> list[dict]:
    """One dict per registry variant (default: ``current_registry()``), cheap enough for an HTTP status
    endpoint (no hashing).

    Keys: variant, family (lib_lcm.families), title, stem, path, installed (file present), verified (a verification record matches
    the file as it is now), verification ("sha256", "header" or None), size (bytes on disk or None),
    expected_size, sha256 (recorded), expected_sha256, sha256_known, repo_id, revision, url,
    partial_bytes (bytes of an unfinished download).
    """
    registry = current_registry() if registry is None else registry
    return [LoraFiles(entry, lora_dir).status_row() for entry in registry.values()]
