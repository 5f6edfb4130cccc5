"""Which Stable Diffusion family a checkpoint is, from its tensor names and shapes alone.

Public API (other modules code against these names):
- ARCHITECTURES: the labels detect_architecture() returns.
- read_safetensors_shapes(path) -> {name: shape}: header only, no tensor is loaded.
- detect_architecture(shapes) -> label.
- detect_checkpoint(path) -> label (safetensors header; other formats -> "unknown").
- lcm_variant_for(label) -> "sd15" | "sdxl" | "ssd1b" | None.
"""
from __future__ import annotations

ARCHITECTURES = (
    "sd1",
    "sd1-inpaint",
    "sd2",
    "sdxl",
    "sdxl-inpaint",
    "ssd1b",
    "sdxl-refiner",
    "unknown",
)


def read_safetensors_shapes(path):
    raise NotImplementedError


def detect_architecture(shapes):
    raise NotImplementedError


def detect_checkpoint(path):
    raise NotImplementedError


def lcm_variant_for(architecture):
    raise NotImplementedError
