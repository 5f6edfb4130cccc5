"""The loaded checkpoint's family and the LCM-LoRA (registry variant and file stem) made for it."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from lib_lcm import architecture
from lib_lcm.weights import registry

# The family the host's own model detection found, by the class of its result (`sd_model.model_config`, a
# huggingface_guess `model_list` class on Forge 2.x and Forge Neo), for files without a readable header (.gguf,
# .ckpt). Checked before the A1111 flags: Neo's Mugen engine sets `is_sdxl` for the WebUI's sake.
_HOST_MODEL_CONFIGS = {
    "Mugen": "mugen",
    "Flux": "flux",
    "FluxSchnell": "flux",
    "Flux2K4B": "flux2",
    "Flux2K9B": "flux2",
    "Chroma": "chroma",
    "SD3": "sd3",
    "Lumina2": "lumina2",
    "ZImage": "z-image",
    "WAN21_T2V": "wan",
    "WAN21_I2V": "wan",
    "QwenImage": "qwen-image",
    "Anima": "anima",
    "Krea2": "krea2",
    "ErnieImage": "ernie-image",
    "PiD": "pid",
}


@dataclass(frozen=True)
class CheckpointVariant:
    """`variant` and `stem` are None where no LCM-LoRA fits the checkpoint's `architecture`."""

    checkpoint: str
    architecture: str
    variant: str | None
    stem: str | None

    @property
    def family(self) -> str:
        return architecture.architecture_name(self.architecture)

    def unsupported_message(self) -> str:
        return (
            f"LCM-LoRA: the loaded checkpoint '{self.checkpoint}' is {self.family}; "
            "LCM-LoRA exists for SD 1.5, SDXL and SSD-1B (and their inpainting models). "
            "Load one of those, or turn LCM-LoRA off."
        )


def detect_loaded_checkpoint(sd_model) -> CheckpointVariant:
    """Family of the loaded model (its safetensors header, else the host's model flags) and its LCM-LoRA."""
    info = getattr(sd_model, "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None) or ""
    name = getattr(info, "name_for_extra", None) or os.path.basename(filename) or "the loaded model"
    label = _label_from_header(filename, mtime_ns(filename))
    if label == "unknown":
        label = _architecture_from_flags(sd_model)
    entries = registry.current_registry()
    variant = registry.variant_for_architecture(label, entries)
    return CheckpointVariant(name, label, variant, entries[variant].stem if variant else None)


@functools.lru_cache(maxsize=64)
def _label_from_header(filename: str, mtime_ns: int | None) -> str:
    # Keyed by mtime: a checkpoint replaced under the same name is read again.
    if mtime_ns is None or not filename.lower().endswith(".safetensors"):
        return "unknown"
    try:
        return architecture.detect_checkpoint(filename)
    except (OSError, ValueError):
        return "unknown"


def mtime_ns(path):
    """A file's modification time, for caches keyed by file; None when it cannot be read."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _architecture_from_flags(sd_model) -> str:
    # .ckpt and .gguf files have no readable header; the host's own model detection and flags still tell.
    host_family = _HOST_MODEL_CONFIGS.get(type(getattr(sd_model, "model_config", None)).__name__)
    if host_family is not None:
        return host_family
    in_channels = None
    try:
        in_channels = sd_model.model.diffusion_model.input_blocks[0][0].in_channels
    except (AttributeError, IndexError, TypeError):
        pass
    if getattr(sd_model, "is_sdxl", False):
        return "sdxl-inpaint" if in_channels == 9 else "sdxl"
    if getattr(sd_model, "is_sd2", False):
        return "sd2"
    if getattr(sd_model, "is_sd1", False):
        return "sd1-inpaint" if in_channels == 9 else "sd1"
    return "unknown"
