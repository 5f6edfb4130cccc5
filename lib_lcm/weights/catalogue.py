"""Questions the panel, the API and the command line ask the catalogue (the registry's entries by family).

Standard library only, like the registry. `select_entry` is the one rule for "which file does family F use on
this checkpoint at N steps"; `match_sha256` recognises a file the user already has, under any name, by its hash
(full, or the WebUI's short form in `Lora hashes`).
"""
from __future__ import annotations

from dataclasses import dataclass

from lib_lcm.architecture import architecture_name
from lib_lcm.families import FAMILY_LABELS
from lib_lcm.weights.registry import Registry, WeightsEntry


class NoFileForArchitecture(LookupError):
    """The family publishes no file for the loaded checkpoint's architecture; the message says which exist."""


def family_entries(registry: Registry, family: str) -> list[WeightsEntry]:
    return [entry for entry in registry.values() if entry.family == family]


def architectures_of(registry: Registry, family: str) -> list[str]:
    """The checkpoint architectures `family` has a file for, in registry order."""
    labels = []
    for entry in family_entries(registry, family):
        labels += [label for label in entry.architectures if label not in labels]
    return labels


def select_entry(registry: Registry, family: str, architecture: str, steps: int) -> WeightsEntry:
    """The file `family` uses on an `architecture` checkpoint at `steps` steps.

    Among the family's files for the architecture: the narrowest step range holding `steps` (Hyper-SD's 4-step
    file at 4 steps, its unified 1-step file at 3); with none holding it, the file distilled for the nearest
    step count (the generation then carries a guard-rail warning, see `steps_warning`). Ties keep registry order.

    Raises:
        NoFileForArchitecture: the family has no file for `architecture` (SDXL-Lightning on SD 1.5).
    """
    candidates = [entry for entry in family_entries(registry, family) if architecture in entry.architectures]
    if not candidates:
        raise NoFileForArchitecture(no_file_message(registry, family, architecture))

    def distance(entry: WeightsEntry) -> int:
        if entry.steps is None:
            return 0
        low, high = entry.steps
        return max(low - steps, 0, steps - high)

    def width(entry: WeightsEntry) -> int:
        return 10**6 if entry.steps is None else entry.steps[1] - entry.steps[0]

    return min(candidates, key=lambda entry: (distance(entry), width(entry)))


def no_file_message(registry: Registry, family: str, architecture: str) -> str:
    label = FAMILY_LABELS.get(family, family)
    others = ", ".join(map(architecture_name, architectures_of(registry, family))) or "none"
    return (f"{label} has no file for {architecture_name(architecture)} checkpoints (it has files for: {others}); "
            f"load such a checkpoint or pick another family")


def steps_warning(entry: WeightsEntry, steps: int) -> str | None:
    """The guard-rail warning for running `entry` at a step count it was not distilled for, or None."""
    if entry.distilled_for(steps):
        return None
    low, high = entry.steps
    distilled = f"{low}" if low == high else f"{low}-{high}"
    return (f"{entry.stem} was distilled for {distilled} steps; {steps} steps run its recipe off the timesteps it "
            f"learnt; use {distilled} steps")


@dataclass(frozen=True)
class HashMatch:
    """A catalogue file recognised by its hash; `obsolete` holds the replaced upload's note when it is one."""

    entry: WeightsEntry
    obsolete: str | None = None

    def message(self) -> str | None:
        """What to tell the user about an obsolete upload (None for a current file)."""
        if self.obsolete is None:
            return None
        return f"this is an earlier upload of {self.entry.stem} ({self.obsolete}); re-download it"


def match_sha256(registry: Registry, digest: str) -> HashMatch | None:
    """The catalogue file whose sha256 is `digest` (64 hex, or a prefix of at least 10, as the WebUI's short
    hashes are), current or obsolete; None when nothing matches or a short prefix is ambiguous."""
    digest = (digest or "").strip().lower()
    if len(digest) < 10:
        return None
    found = []
    for entry in registry.values():
        if entry.sha256 and entry.sha256.startswith(digest):
            found.append(HashMatch(entry))
        found += [HashMatch(entry, old.note or "replaced upload") for old in entry.obsolete
                  if old.sha256.startswith(digest)]
    return found[0] if len(found) == 1 else None
