"""lib_lcm.weights.registry: the shipped facts, validation, the cached registry of the process, and what derives from
the registry (stems, the variant of each architecture, the download mode)."""
from __future__ import annotations

import json
import os

import pytest

from lib_lcm.architecture import SD_ARCHITECTURES
from lib_lcm.weights import registry as reg
from lib_lcm.weights.errors import WeightsRegistryError
from tests.fakehub import registry_json

# The researched table (issue 3): what the shipped registry must say.
FACTS = {
    "sd15": ("latent-consistency/lcm-lora-sdv1-5", "cf2fced511dbe7e26c8d1d397e728fbab875db4b", 134621556,
             "8f90d840e075ff588a58e22c6586e2ae9a6f7922996ee6649a7f01072333afe4", "lcm-lora-sdv1-5", "SD1"),
    "sdxl": ("latent-consistency/lcm-lora-sdxl", "a18548dd4956b174ec5b0d78d340c8dae0a129cd", 393855224,
             "a764e6859b6e04047cd761c08ff0cee96413a8e004c9f07707530cd776b19141", "lcm-lora-sdxl", "SDXL"),
}



def shipped():
    return reg.load_registry(reg.default_registry_path())


def test_shipped_registry_states_the_researched_facts():
    registry = reg.load_registry()
    assert reg.family_variants(registry) == ["sd15", "sdxl", "ssd1b"] == list(registry)[:3]
    for variant, (repo, revision, size, sha256, stem, sd_version) in FACTS.items():
        entry = registry[variant]
        assert (entry.repo_id, entry.revision, entry.size, entry.sha256, entry.stem, entry.sd_version) == (
            repo, revision, size, sha256, stem, sd_version)
        assert entry.verified and entry.filename == "pytorch_lora_weights.safetensors"
        assert entry.license == "openrail++"
    ssd = registry["ssd1b"]
    assert (ssd.repo_id, ssd.stem, ssd.revision) == ("latent-consistency/lcm-lora-ssd-1b", "lcm-lora-ssd-1b", "main")
    assert not ssd.verified and ssd.sha256 is None and ssd.size is None
    assert ssd.unconfirmed_sha256 == "7adaaa69db6f011058a19fd1d5315fdf19ef79fcd513cdab30e173833fd5c59b"
    assert (registry["sd15"].context_dim, registry["sdxl"].context_dim, ssd.context_dim) == (768, 2048, 2048)


def test_registry_override_replaces_the_shipped_one(tmp_path, monkeypatch):
    path = tmp_path / "mirror.json"
    path.write_text(json.dumps(registry_json({"sd15": {"repo_id": "mirror/lcm", "revision": "b" * 40,
                                                        "size": 10, "sha256": "c" * 64}})))
    monkeypatch.setenv(reg.REGISTRY_ENV, str(path))
    registry = reg.load_registry()
    assert list(registry) == ["sd15"] and registry["sd15"].repo_id == "mirror/lcm"


@pytest.mark.parametrize("change, complaint", [
    ({"sha256": None}, "verified"),
    ({"filename": "pytorch_lora_weights.bin"}, "only .safetensors"),
    ({"sha256": "XYZ"}, "64 lower-case hex"),
    ({"revision": "main"}, "40-hex"),
    ({"stem": "../escape"}, "plain file name"),
    ({"sd_version": "SD3"}, "sd_version"),
    ({"size": "big"}, "size must be int"),
    ({"architectures": "sd1"}, "architectures must be a list"),
])
def test_invalid_registry_entries_are_named(change, complaint):
    fields = {"repo_id": "org/repo", "revision": "a" * 40, "size": 1, "sha256": "a" * 64}
    fields.update(change)
    with pytest.raises(WeightsRegistryError, match=complaint):
        reg.parse_registry(registry_json({"sd15": fields}))


def test_duplicate_stems_are_rejected():
    fields = {"repo_id": "org/repo", "revision": "a" * 40, "size": 1, "sha256": "a" * 64, "stem": "same"}
    with pytest.raises(WeightsRegistryError, match="unique"):
        reg.parse_registry(registry_json({"a": fields, "b": dict(fields)}))


def test_unreadable_registry_names_the_file(tmp_path, monkeypatch):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    monkeypatch.setenv(reg.REGISTRY_ENV, str(broken))
    with pytest.raises(WeightsRegistryError, match="not valid JSON") as caught:
        reg.load_registry()
    assert str(broken) in str(caught.value)
    with pytest.raises(WeightsRegistryError, match="not valid JSON"):
        reg.current_registry()
    with pytest.raises(WeightsRegistryError, match="cannot read"):
        reg.load_registry(tmp_path / "absent.json")


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(WeightsRegistryError, match="sd15, sdxl, ssd1b"):
        reg.get_entry("sd3", reg.load_registry())
    assert reg.get_entry("sdxl").stem == "lcm-lora-sdxl"  # default: the registry of the process


def _write(path, stem_prefix: str, size: int = 1) -> None:
    path.write_text(json.dumps(registry_json({
        "sd15": {"repo_id": "org/a", "revision": "a" * 40, "size": size, "sha256": "a" * 64,
                 "stem": f"{stem_prefix}-sd15"},
    })))


def test_current_registry_is_read_once_and_again_when_the_file_changes(tmp_path, monkeypatch):
    default = reg.current_registry()
    assert reg.current_registry() is default and list(default)[:3] == ["sd15", "sdxl", "ssd1b"]
    with pytest.raises(TypeError):
        default["sd15"] = None  # shared by the whole process: read-only
    path = tmp_path / "mine.json"
    _write(path, "first")
    monkeypatch.setenv(reg.REGISTRY_ENV, str(path))
    first = reg.current_registry()
    assert first["sd15"].stem == "first-sd15" and reg.current_registry() is first
    _write(path, "second", size=22)  # another size
    second = reg.current_registry()
    assert second["sd15"].stem == "second-sd15" and reg.current_registry() is second
    before = path.stat()
    _write(path, "thirdx", size=22)  # the same size: only the mtime tells
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert reg.current_registry()["sd15"].stem == "thirdx-sd15"
    monkeypatch.delenv(reg.REGISTRY_ENV)
    assert list(reg.current_registry())[:3] == ["sd15", "sdxl", "ssd1b"]


def test_stems_in_registry_order():
    assert reg.stems(shipped()) == ("lcm-lora-sdv1-5", "lcm-lora-sdxl", "lcm-lora-ssd-1b")
    assert reg.stems() == reg.stems(shipped())
    custom = reg.parse_registry(registry_json({
        "b": {"repo_id": "org/b", "revision": "a" * 40, "size": 1, "sha256": "a" * 64, "stem": "zz-lcm"},
        "a": {"repo_id": "org/a", "revision": "a" * 40, "size": 1, "sha256": "a" * 64, "stem": "aa-lcm"},
    }))
    assert reg.stems(custom) == ("zz-lcm", "aa-lcm")


def test_shipped_variants_per_architecture():
    registry = shipped()
    assert {label: reg.variant_for_architecture(label, registry) for label in (*SD_ARCHITECTURES, "unknown")} == {
        "sd1": "sd15", "sd1-inpaint": "sd15", "sd2": None, "sdxl": "sdxl", "sdxl-inpaint": "sdxl",
        "ssd1b": "ssd1b", "sdxl-refiner": None, "unknown": None,
    }
    assert reg.variant_for_architecture("something else", registry) is None
    assert reg.variant_for_architecture("sdxl") == "sdxl"  # default: the registry of the process


def test_variant_for_architecture_comes_from_the_registry_alone():
    common = {"revision": "a" * 40, "size": 1, "sha256": "a" * 64}
    custom = reg.parse_registry(registry_json({
        "turbo": {**common, "repo_id": "org/turbo", "stem": "my-sd-lcm", "architectures": ["sd1", "sd2"]},
        "xl": {**common, "repo_id": "org/xl", "stem": "my-xl-lcm", "architectures": ["sdxl", "sdxl-refiner"]},
        "spare": {**common, "repo_id": "org/spare", "stem": "spare-lcm", "architectures": ["sd1"]},
        "plain": {**common, "repo_id": "org/plain", "stem": "plain-lcm"},
    }))
    assert reg.variant_for_architecture("sd2", custom) == "turbo"
    assert reg.variant_for_architecture("sdxl-refiner", custom) == "xl"
    assert reg.variant_for_architecture("sd1", custom) == "turbo"  # the first variant listing a label wins
    assert reg.variant_for_architecture("ssd1b", custom) is None  # no built-in fallback
    assert custom["plain"].architectures == ()


def test_download_mode_parsing():
    registry = reg.load_registry()
    assert reg.parse_variants("auto", registry) is None
    assert reg.parse_variants("", registry) is None
    assert reg.parse_variants("all", registry) == ["sd15", "sdxl", "ssd1b"]
    assert reg.parse_variants("none", registry) == []
    assert reg.parse_variants(" SDXL, sd15,sdxl", registry) == ["sdxl", "sd15"]
    with pytest.raises(WeightsRegistryError, match="sd3"):
        reg.parse_variants("sd15,sd3", registry)
