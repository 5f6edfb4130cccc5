"""The weights registry (the catalogue): which file each variant is, its few-step family, which checkpoint families
it is for, the step counts it was distilled for and its sampling recipe.

Standard library only: install.py reads the registry at every WebUI launch and must stay well under 0.3 s.

The registry (``registry.json`` next to this file, or the JSON file named by ``LCM_LORA_REGISTRY``)
maps a variant id to a Hugging Face repo file. Schema (per variant, unknown keys are ignored):

- ``repo_id`` (str, ``owner/name``), ``filename`` (str, ``*.safetensors``), ``revision`` (str: a 40-hex
  commit or a branch name), ``stem`` (str: the file name under ``LCM-LoRA/`` without ``.safetensors``).
- ``size`` (int or null), ``sha256`` (64 hex or null).
- ``verified`` (bool): true only when revision, size and sha256 were confirmed; then all three are
  required and the downloaded bytes must match them. False: the file is accepted when its safetensors
  header holds LoRA tensors whose cross-attention width equals ``context_dim``.
- ``sd_version`` ("SD1", "SD2", "SDXL"), ``context_dim`` (int), ``title``, ``license``, ``note``,
  ``unconfirmed_sha256`` (informational).
- ``architectures`` (list of lib_lcm.architecture labels): the checkpoint families this variant is for;
  the single source of ``variant_for_architecture`` (the first variant listing a label wins).
- ``family`` (one of ``lib_lcm.families.FAMILY_KEYS``, default "lcm"): the few-step LoRA family. Only "lcm" files
  are ever fetched without being asked for (install.py's "auto" and "all"); the others on demand.
- ``steps`` (``[low, high]``, optional): the step counts the file was distilled for; outside them a generation
  runs with a guard-rail warning. ``recipe`` (a ``lib_lcm.recipes.RECIPES`` key, default "lcm"): the sampler the
  model card runs it with (what picking a family sets in the panel is the family's, ``lib_lcm.families``).
- ``obsolete`` (list of ``{"sha256", "size", "note"}``): earlier uploads the repository replaced; a file with one
  of these hashes is recognised and named, never accepted.

``load_registry`` reads a file each time; ``current_registry`` is the registry of this process, read once
and read again only when the file (or ``LCM_LORA_REGISTRY``) changes.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lib_lcm.families import DEFAULT_FAMILY, FAMILY_KEYS
from lib_lcm.weights.errors import WeightsRegistryError

REGISTRY_ENV = "LCM_LORA_REGISTRY"
DOWNLOAD_MODE_ENV = "LCM_LORA_DOWNLOAD"
DEFAULT_ENDPOINT = "https://huggingface.co"
SCHEMA_VERSION = 1
SD_VERSIONS = ("SD1", "SD2", "SDXL", "Unknown")

HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_STEM = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class ObsoleteFile:
    """An earlier upload of an entry's file, replaced in its repository (``note`` says when and why)."""

    sha256: str
    size: int | None
    note: str


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
    family: str = DEFAULT_FAMILY
    steps: tuple[int, int] | None = None
    recipe: str = "lcm"
    obsolete: tuple[ObsoleteFile, ...] = ()

    def url(self, endpoint: str | None = None) -> str:
        """The file's resolve URL on ``endpoint`` (default: ``HF_ENDPOINT`` or huggingface.co)."""
        base = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        return f"{base}/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def file_name(self) -> str:
        return f"{self.stem}.safetensors"

    def distilled_for(self, steps: int) -> bool:
        """Whether ``steps`` is a step count this file was distilled for (any count where none is recorded)."""
        return self.steps is None or self.steps[0] <= steps <= self.steps[1]


Registry = Mapping[str, WeightsEntry]


def default_registry_path() -> Path:
    return Path(__file__).with_name("registry.json")


def registry_path(environ=None) -> Path:
    """``$LCM_LORA_REGISTRY``, else the shipped ``registry.json``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(REGISTRY_ENV) or default_registry_path())


def load_registry(path: str | os.PathLike | None = None, environ=None) -> dict[str, WeightsEntry]:
    """Read and validate a registry file: ``path``, else ``$LCM_LORA_REGISTRY``, else the shipped one.

    Reads the file on every call (see ``current_registry`` for the cached one). Raises
    WeightsRegistryError naming the file and the offending field.
    """
    path = Path(path) if path else registry_path(environ)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeightsRegistryError(f"cannot read the LCM-LoRA registry {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise WeightsRegistryError(f"the LCM-LoRA registry {path} is not valid JSON: {exc}") from None
    return parse_registry(data, source=str(path))


_current: tuple[tuple, Registry] | None = None


def current_registry() -> Registry:
    """The registry of this process, read-only and cached.

    Keyed by the resolved path (``$LCM_LORA_REGISTRY`` or the shipped file), its mtime_ns and size: the
    same file gives the same object, an edited or another file is read again. Errors are not cached.
    """
    global _current
    path = registry_path()
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_registry(path)  # raises the error that names the file
    cached = _current
    if cached is not None and cached[0] == key:
        return cached[1]
    registry = MappingProxyType(load_registry(path))
    _current = (key, registry)
    return registry


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
    lowered = [e.stem.lower() for e in entries.values()]
    if len(set(lowered)) != len(lowered):
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

    fields = dict(
        repo_id=field("repo_id", str), filename=field("filename", str), revision=field("revision", str),
        stem=field("stem", str), size=field("size", int, required=False),
        sha256=field("sha256", str, required=False), verified=field("verified", bool),
        sd_version=field("sd_version", str), context_dim=field("context_dim", int, required=False),
    )
    _check_fields(variant, bad, **fields)
    architectures = raw.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise bad(f"{variant}.architectures must be a list of strings")
    unconfirmed = raw.get("unconfirmed_sha256")
    return WeightsEntry(
        variant=variant,
        **fields,
        architectures=tuple(architectures),
        title=str(raw.get("title") or variant),
        license=str(raw.get("license") or ""),
        note=str(raw.get("note") or ""),
        unconfirmed_sha256=unconfirmed if isinstance(unconfirmed, str) and _HEX64.match(unconfirmed) else None,
        **_catalogue_fields(variant, raw, bad),
    )


def _catalogue_fields(variant, raw, bad) -> dict:
    """``family``, ``steps``, ``recipe`` and ``obsolete``, validated (see the module docstring)."""
    family = raw.get("family", DEFAULT_FAMILY)
    if family not in FAMILY_KEYS:
        raise bad(f"{variant}.family must be one of {', '.join(FAMILY_KEYS)}, got {family!r}")
    steps = raw.get("steps")
    if steps is not None and not (
        isinstance(steps, list) and len(steps) == 2 and all(type(n) is int for n in steps) and 1 <= steps[0] <= steps[1]
    ):
        raise bad(f"{variant}.steps must be [low, high], whole numbers with 1 <= low <= high")
    recipe = raw.get("recipe", "lcm")
    if not isinstance(recipe, str) or not _VARIANT.match(recipe):
        raise bad(f"{variant}.recipe must be a recipe name such as \"ddim-trailing\"")
    return {"family": family, "steps": tuple(steps) if steps else None, "recipe": recipe,
            "obsolete": _obsolete_files(variant, raw, bad)}


def _obsolete_files(variant, raw, bad) -> tuple[ObsoleteFile, ...]:
    files = raw.get("obsolete") or []
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("sha256"), str) and _HEX64.match(f["sha256"]) for f in files
    ):
        raise bad(f'{variant}.obsolete must be a list of {{"sha256": 64 hex, "size": int, "note": str}}')
    return tuple(ObsoleteFile(f["sha256"], f.get("size") if type(f.get("size")) is int else None,
                              str(f.get("note") or "")) for f in files)


def _check_fields(variant, bad, *, repo_id, filename, revision, stem, size, sha256, verified, sd_version,
                  context_dim) -> None:
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
    if verified and (sha256 is None or size is None or not HEX40.match(revision)):
        raise bad(f'{variant}: "verified": true needs sha256, size and a 40-hex commit revision')
    if sd_version not in SD_VERSIONS:
        raise bad(f"{variant}.sd_version must be one of {', '.join(SD_VERSIONS)}")


def get_entry(variant: str, registry: Registry | None = None) -> WeightsEntry:
    """The entry of ``variant`` (default registry: ``current_registry()``); WeightsRegistryError if unknown."""
    registry = current_registry() if registry is None else registry
    try:
        return registry[variant]
    except KeyError:
        raise WeightsRegistryError(
            f"unknown LCM-LoRA variant {variant!r}; known: {', '.join(registry)}"
        ) from None


def stems(registry: Registry | None = None, family: str | None = DEFAULT_FAMILY) -> tuple[str, ...]:
    """The file stems (``<lora:STEM>``) of ``family``'s variants (every variant for None), in registry order."""
    registry = current_registry() if registry is None else registry
    return tuple(entry.stem for entry in registry.values() if family is None or entry.family == family)


def family_variants(registry: Registry, family: str = DEFAULT_FAMILY) -> list[str]:
    """The variant ids of ``family``, in registry order."""
    return [variant for variant, entry in registry.items() if entry.family == family]


def variant_for_architecture(label: str, registry: Registry | None = None, family: str = DEFAULT_FAMILY) -> str | None:
    """The ``family`` variant (LCM-LoRA by default) made for the checkpoint family ``label``, or None.

    Read from each entry's ``architectures``; the first variant listing ``label`` wins. The shipped
    registry gives inpainting checkpoints their base model's LCM-LoRA (as the LCM-LoRA model card's
    inpainting example does) and SD2.x, the SDXL refiner and unknown models none.
    """
    registry = current_registry() if registry is None else registry
    return next((entry.variant for entry in registry.values()
                 if entry.family == family and label in entry.architectures), None)


def parse_variants(value: str, registry: Registry) -> list[str] | None:
    """``LCM_LORA_DOWNLOAD`` / ``--variant``: None for "auto", [] for "none", else variant ids.

    Accepts "auto", "all" (every LCM-LoRA variant: never gigabytes of other families unasked), "catalogue" (every
    variant), "none", or a comma list of variant ids and family keys (a family: all its variants); raises
    WeightsRegistryError otherwise.
    """
    words = [w.strip().lower() for w in (value or "auto").split(",") if w.strip()]
    if not words or words == ["auto"]:
        return None
    if words in (["none"], ["off"], ["0"]):
        return []
    chosen, unknown = [], []
    for word in words:
        if word == "all":
            chosen += family_variants(registry)
        elif word == "catalogue":
            chosen += list(registry)
        elif word in registry:
            chosen.append(word)
        elif word in FAMILY_KEYS:
            chosen += family_variants(registry, word)
        else:
            unknown.append(word)
    if unknown:
        raise WeightsRegistryError(
            f"unknown variant {', '.join(unknown)}: use auto, all, catalogue, none, a family "
            f"({', '.join(FAMILY_KEYS)}) or a comma list of {', '.join(registry)}"
        )
    return list(dict.fromkeys(chosen))
