"""The few-step LoRA families: one table for the panel's Family choice, the API's `"family"`, the infotext, the
X/Y/Z axis, the command line and the registry's `family` field.

Standard library only: the registry (read by install.py at every launch) validates its entries against it.
Which file and recipe a family uses for a checkpoint and a step count is the registry's to say
(`lib_lcm.weights.registry.select_entry`); the recipes themselves are `lib_lcm.recipes`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One family: `key` (API, infotext, CLI), `label` (panel, status line), `summary` (what it is for), and what
    picking it sets: `steps` (which also picks the file, see `select_entry`), `cfg_scale` and `weight`, from the
    model cards. `cfg_range`: the guidance the files were distilled for; outside it a guard-rail warning."""

    key: str
    label: str
    summary: str
    steps: int = 4
    cfg_scale: float = 1.0
    weight: float = 1.0
    cfg_range: tuple = (1.0, 2.0)


FAMILIES = (
    Family("lcm", "LCM-LoRA", "the first few-step LoRA (2023): SD 1.5, SDXL, SSD-1B; 2-8 steps, CFG 1-2"),
    Family("tcd", "TCD", "Trajectory Consistency Distillation: SD 1.5, SDXL; 4-8 steps, more detail than LCM"),
    Family("hyper", "Hyper-SD", "ByteDance's Hyper-SD: SD 1.5, SDXL; one file per step count (1, 2, 4, 8)"),
    Family("hyper-cfg", "Hyper-SD CFG", "Hyper-SD's CFG-preserving files: 8 or 12 steps, CFG 5-8, negative prompt",
           steps=8, cfg_scale=5.0, cfg_range=(5.0, 8.0)),
    Family("lightning", "SDXL-Lightning", "ByteDance's SDXL-Lightning: SDXL only; 2, 4 or 8 steps"),
    Family("dmd2", "DMD2", "Distribution Matching Distillation 2: SDXL only; 4 steps"),
)
FAMILY_KEYS = tuple(family.key for family in FAMILIES)
FAMILIES_BY_KEY = {family.key: family for family in FAMILIES}
FAMILY_LABELS = {family.key: family.label for family in FAMILIES}
FAMILY_DEFAULTS = ("steps", "cfg_scale", "weight")  # the panel values a family sets when picked
DEFAULT_FAMILY = "lcm"


def family_key(value: str) -> str | None:
    """The family `value` names (its key or its label, any case), or None."""
    text = str(value).strip().lower()
    return next((f.key for f in FAMILIES if text in (f.key, f.label.lower())), None)
