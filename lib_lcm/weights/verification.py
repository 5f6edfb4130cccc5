"""Is a file the LCM-LoRA its registry entry describes? By size and sha256, or by its safetensors header.

Standard library only. Entries with a confirmed sha256 are checked by size and hash; the others by their
header: only A1111-loadable UNet LoRA tensors, with the cross-attention width of the entry's architecture.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from lib_lcm.safetensors_header import SafetensorsHeaderError, read_header
from lib_lcm.weights.registry import WeightsEntry

_LORA_SUFFIXES = ("lora_down.weight", "lora_up.weight", "alpha")


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


def lora_modules(header: dict) -> set[str]:
    """The modules a LoRA file adapts (`lora_unet_...`, `lora_te...`), from its safetensors header."""
    return {name.partition(".")[0] for name in header if name != "__metadata__" and name.partition(".")[2] in _LORA_SUFFIXES}


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
    size_problem = f"size is {size} bytes, expected {entry.size}" if entry.size not in (None, size) else ""
    # An earlier upload the repository replaced (DMD2's first LoRAs) is named, so the fix is plain: re-download.
    if size_problem and not any(old.size in (None, size) for old in entry.obsolete):
        return Verification(False, method, None, size, size_problem)
    digest = sha256_file(path)
    replaced = next((old for old in entry.obsolete if old.sha256 == digest), None)
    if replaced is not None:
        return Verification(False, method, digest, size,
                            f"it is an earlier upload of {entry.stem} ({replaced.note}); re-download it")
    if size_problem:
        return Verification(False, method, digest, size, size_problem)
    if entry.sha256:
        if digest != entry.sha256:
            return Verification(False, method, digest, size, f"sha256 is {digest}, expected {entry.sha256}")
        return Verification(True, method, digest, size)
    try:
        problems = lora_header_problems(entry, read_header(path))
    except SafetensorsHeaderError as exc:
        problems = [f"not a complete safetensors file: {exc.reason}"]
    if problems:
        return Verification(False, method, digest, size, "; ".join(problems))
    return Verification(True, method, digest, size)
