"""lib_lcm.weights: registry, verification, records, sidecar cards and WebUI folder resolution (no network)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from lib_lcm import weights
from tests.fakehub import lora_bytes, registry_json

# The researched table (issue 3): what the shipped registry must say.
FACTS = {
    "sd15": ("latent-consistency/lcm-lora-sdv1-5", "cf2fced511dbe7e26c8d1d397e728fbab875db4b", 134621556,
             "8f90d840e075ff588a58e22c6586e2ae9a6f7922996ee6649a7f01072333afe4", "lcm-lora-sdv1-5", "SD1"),
    "sdxl": ("latent-consistency/lcm-lora-sdxl", "a18548dd4956b174ec5b0d78d340c8dae0a129cd", 393855224,
             "a764e6859b6e04047cd761c08ff0cee96413a8e004c9f07707530cd776b19141", "lcm-lora-sdxl", "SDXL"),
}


@pytest.fixture(autouse=True)
def _no_registry_override(monkeypatch):
    monkeypatch.delenv(weights.REGISTRY_ENV, raising=False)


def entry_for(data: bytes | None, context_dim=768, **fields) -> weights.WeightsEntry:
    base = {"repo_id": "org/repo", "revision": "a" * 40}
    if data is not None:
        base.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    else:
        base.update(size=None, sha256=None, verified=False, revision="main")
    base.update(context_dim=context_dim, **fields)
    return weights.parse_registry(registry_json({"v": base}))["v"]


def test_shipped_registry_states_the_researched_facts():
    registry = weights.load_registry()
    assert list(registry) == ["sd15", "sdxl", "ssd1b"]
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
    monkeypatch.setenv(weights.REGISTRY_ENV, str(path))
    registry = weights.load_registry()
    assert list(registry) == ["sd15"] and registry["sd15"].repo_id == "mirror/lcm"


@pytest.mark.parametrize("change, complaint", [
    ({"sha256": None}, "verified"),
    ({"filename": "pytorch_lora_weights.bin"}, "only .safetensors"),
    ({"sha256": "XYZ"}, "64 lower-case hex"),
    ({"revision": "main"}, "40-hex"),
    ({"stem": "../escape"}, "plain file name"),
    ({"sd_version": "SD3"}, "sd_version"),
    ({"size": "big"}, "size must be int"),
])
def test_invalid_registry_entries_are_named(change, complaint):
    fields = {"repo_id": "org/repo", "revision": "a" * 40, "size": 1, "sha256": "a" * 64}
    fields.update(change)
    with pytest.raises(weights.WeightsRegistryError, match=complaint):
        weights.parse_registry(registry_json({"sd15": fields}))


def test_duplicate_stems_are_rejected():
    fields = {"repo_id": "org/repo", "revision": "a" * 40, "size": 1, "sha256": "a" * 64, "stem": "same"}
    with pytest.raises(weights.WeightsRegistryError, match="unique"):
        weights.parse_registry(registry_json({"a": fields, "b": dict(fields)}))


def test_unreadable_registry_names_the_file(tmp_path, monkeypatch):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    monkeypatch.setenv(weights.REGISTRY_ENV, str(broken))
    with pytest.raises(weights.WeightsRegistryError, match="not valid JSON") as caught:
        weights.load_registry()
    assert str(broken) in str(caught.value)
    with pytest.raises(weights.WeightsRegistryError, match="cannot read"):
        weights.load_registry(tmp_path / "absent.json")


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(weights.WeightsRegistryError, match="sd15, sdxl, ssd1b"):
        weights.get_entry("sd3", weights.load_registry())


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert weights.sha256_file(path, chunk_size=1 << 20) == hashlib.sha256(data).hexdigest()


def test_safetensors_header_reader_accepts_real_files_and_catches_truncation(tmp_path):
    data = lora_bytes(768)
    path = tmp_path / "lora.safetensors"
    path.write_bytes(data)
    header = weights.read_safetensors_header(path)
    assert any(k.endswith("attn2_to_k.lora_down.weight") for k in header)
    path.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        weights.read_safetensors_header(path)
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(ValueError, match="does not fit"):
        weights.read_safetensors_header(path)
    path.write_bytes(b"PK\x03\x04 a zip, i.e. a pickled torch file")
    with pytest.raises(ValueError):
        weights.read_safetensors_header(path)


def test_verify_by_sha256_and_size(tmp_path):
    data = lora_bytes(768)
    entry = entry_for(data)
    path = tmp_path / "f.safetensors"
    path.write_bytes(data)
    assert weights.verify_file(entry, path) == weights.Verification(True, "sha256", entry.sha256, len(data))
    flipped = bytearray(data)
    flipped[-1] ^= 1
    path.write_bytes(bytes(flipped))
    result = weights.verify_file(entry, path)
    assert not result.ok and "sha256" in result.problem
    path.write_bytes(data + b"x")
    assert "size" in weights.verify_file(entry, path).problem


def test_verify_by_header_for_unconfirmed_entries(tmp_path):
    entry = entry_for(None, context_dim=2048)
    path = tmp_path / "f.safetensors"
    path.write_bytes(lora_bytes(2048))
    result = weights.verify_file(entry, path)
    assert result.ok and result.method == "header" and result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(lora_bytes(768))
    assert "cross-attention width" in weights.verify_file(entry, path).problem
    import numpy as np

    path.write_bytes(lora_bytes(2048, extra={"model.diffusion_model.out.2.weight": np.zeros((4, 4), np.float16)}))
    assert "not LoRA weights" in weights.verify_file(entry, path).problem
    path.write_bytes(lora_bytes(2048)[:-5])
    assert "not a complete safetensors" in weights.verify_file(entry, path).problem


def _install_by_hand(entry, lora_dir, data) -> Path:
    path = weights.target_path(entry, lora_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    weights.make_folders(lora_dir)
    weights.write_record(entry, lora_dir, weights.verify_file(entry, path))
    return path


def test_record_notices_changed_files_and_changed_registry(tmp_path):
    data = lora_bytes(768)
    entry = entry_for(data)
    path = _install_by_hand(entry, tmp_path, data)
    assert weights.recorded_verification(entry, tmp_path) == "sha256"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert weights.recorded_verification(entry, tmp_path) is None
    _install_by_hand(entry, tmp_path, data)
    other = entry_for(lora_bytes(768, seed=9))
    assert weights.recorded_verification(other, tmp_path) is None  # same stem, different expected file
    path.unlink()
    assert weights.recorded_verification(entry, tmp_path) is None


def test_status_rows_describe_installed_and_missing(tmp_path):
    data = lora_bytes(768)
    registry = weights.parse_registry(registry_json({
        "sd15": {"repo_id": "org/a", "revision": "a" * 40, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "ssd1b": {"repo_id": "org/b", "revision": "main", "size": None, "sha256": None, "verified": False,
                  "context_dim": 2048, "sd_version": "SDXL"},
    }))
    _install_by_hand(registry["sd15"], tmp_path, data)
    rows = {row["variant"]: row for row in weights.weights_status(tmp_path, registry)}
    assert rows["sd15"]["installed"] and rows["sd15"]["verified"] and rows["sd15"]["size"] == len(data)
    assert rows["sd15"]["sha256_known"] and rows["sd15"]["sha256"] == registry["sd15"].sha256
    assert not rows["ssd1b"]["installed"] and not rows["ssd1b"]["verified"] and not rows["ssd1b"]["sha256_known"]
    assert rows["ssd1b"]["path"] == str(tmp_path / "LCM-LoRA" / "test-ssd1b.safetensors")


def test_sidecar_card_uses_the_webui_lora_tab_keys_and_keeps_user_edits(tmp_path):
    entry = weights.load_registry()["sdxl"]
    weights.make_folders(tmp_path)
    weights.write_sidecar(entry, tmp_path)
    path = weights.sidecar_path(entry, tmp_path)
    card = json.loads(path.read_text())
    # extensions-builtin/Lora/ui_edit_user_metadata.py save_lora_user_metadata() keys, A1111 1.10.1
    assert set(card) == {"description", "sd version", "activation text", "preferred weight", "negative text", "notes"}
    assert card["sd version"] == "SDXL" and "latent-consistency/lcm-lora-sdxl" in card["description"]
    assert "openrail++" in card["description"]
    path.write_text(json.dumps({"sd version": "SDXL", "notes": "mine"}))
    weights.write_sidecar(entry, tmp_path)
    assert json.loads(path.read_text())["notes"] == "mine"


@pytest.mark.parametrize("code, kind", [
    (errno.ENOSPC, weights.WeightsDiskFullError),
    (errno.EROFS, weights.WeightsPermissionError),
    (errno.EACCES, weights.WeightsPermissionError),
    (errno.EIO, weights.WeightsFilesystemError),
])
def test_filesystem_errors_name_the_fix(code, kind):
    error = weights.filesystem_error(OSError(code, os.strerror(code)), "writing", "/x/y")
    assert type(error) is kind and "/x/y" in str(error)
    assert ("free some space" in str(error)) == (code == errno.ENOSPC)
    assert ("writable" in str(error)) == (kind is weights.WeightsPermissionError)


def test_make_folders_under_a_file_is_a_filesystem_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(weights.WeightsFilesystemError, match="creating"):
        weights.make_folders(blocker / "Lora")


def test_webui_dirs_follow_a1111_defaults_and_flags(tmp_path):
    root = tmp_path / "webui"
    (root / "modules").mkdir(parents=True)
    (root / "modules" / "paths_internal.py").write_text("")
    extension = tmp_path / "data" / "extensions" / "sd-webui-lcm-lora"
    env = {"PYTHONPATH": str(root)}
    # An extension in <data>/extensions: the data dir is there, even if --data-dir was not in COMMANDLINE_ARGS.
    dirs = weights.webui_dirs(extension, "", env)
    assert dirs == weights.WebuiDirs(tmp_path / "data" / "models" / "Lora",
                                     (tmp_path / "data" / "models" / "Stable-diffusion",))
    # A checkout elsewhere: the WebUI root on PYTHONPATH.
    dev_checkout = tmp_path / "src" / "sd-webui-lcm-lora"
    assert weights.webui_dirs(dev_checkout, "", env).lora_dir == root / "models" / "Lora"
    data = tmp_path / "my data"
    dirs = weights.webui_dirs(extension, f"--data-dir '{data}' --ckpt-dir /ckpts", env)
    assert dirs.lora_dir == data / "models" / "Lora"
    assert dirs.checkpoint_dirs == (data / "models" / "Stable-diffusion", Path("/ckpts"))
    dirs = weights.webui_dirs(extension, f"--data-dir {data} --models-dir /m --lora-dir=/l --xformers", env)
    assert dirs == weights.WebuiDirs(Path("/l"), (Path("/m/Stable-diffusion"),))
    assert weights.webui_dirs(extension, "--lora-dir 'unterminated", env).lora_dir == tmp_path / "data" / "models" / "Lora"


def test_download_mode_parsing():
    registry = weights.load_registry()
    assert weights.parse_variants("auto", registry) is None
    assert weights.parse_variants("", registry) is None
    assert weights.parse_variants("all", registry) == ["sd15", "sdxl", "ssd1b"]
    assert weights.parse_variants("none", registry) == []
    assert weights.parse_variants(" SDXL, sd15,sdxl", registry) == ["sdxl", "sd15"]
    with pytest.raises(weights.WeightsRegistryError, match="sd3"):
        weights.parse_variants("sd15,sd3", registry)


def test_variants_for_checkpoints_uses_headers_once_and_defaults_to_sd15(tmp_path):
    registry = weights.load_registry()
    folder = tmp_path / "Stable-diffusion"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.safetensors", "sub/b.safetensors", "c.ckpt"):
        (folder / name).write_bytes(name.encode())
    labels = {"a.safetensors": "sdxl", "b.safetensors": "sd2"}
    seen = []

    def detect(path):
        seen.append(path.name)
        return labels[path.name]

    variant_for = {"sdxl": "sdxl", "sd1": "sd15"}.get
    cache = tmp_path / "cache.json"
    assert weights.variants_for_checkpoints([folder], registry, cache, detect, variant_for) == ["sdxl"]
    assert sorted(seen) == ["a.safetensors", "b.safetensors"]  # .ckpt is never opened (pickle)
    seen.clear()
    assert weights.variants_for_checkpoints([folder], registry, cache, detect, variant_for) == ["sdxl"]
    assert seen == []
    (folder / "a.safetensors").write_bytes(b"changed!")
    labels["a.safetensors"] = "sd1"
    assert weights.variants_for_checkpoints([folder], registry, cache, detect, variant_for) == ["sd15"]
    assert seen == ["a.safetensors"]
    assert weights.variants_for_checkpoints([tmp_path / "none"], registry, None, detect, variant_for) == ["sd15"]
    cache.unlink()
    seen.clear()
    assert weights.variants_for_checkpoints([folder], registry, cache, detect, variant_for, time_budget=-1) == ["sd15"]
    assert seen == [] and not cache.exists()  # nothing read, nothing cached: the next launch reads them


def test_variants_for_checkpoints_with_the_real_detector(tmp_path):
    from tests.fixtures import layouts

    folder = tmp_path / "Stable-diffusion"
    folder.mkdir()
    for label in ("sdxl", "ssd1b"):
        header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]}
                  for k, v in layouts.real_checkpoint_shapes(label).items()}
        raw = json.dumps(header).encode()
        (folder / f"{label}.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert sorted(weights.variants_for_checkpoints([folder], weights.load_registry())) == ["sdxl", "ssd1b"]
