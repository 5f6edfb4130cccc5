"""lib_lcm.weights.lora_files: a variant's files in a Lora folder, its verification record, status rows and card."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lib_lcm.weights.errors import WeightsFilesystemError
from lib_lcm.weights.lora_files import LoraFiles, make_folders, weights_status
from lib_lcm.weights.registry import load_registry, parse_registry
from lib_lcm.weights.verification import verify_file
from tests.fakehub import lora_bytes, registry_json
from tests.test_verification import entry_for


def _install_by_hand(entry, lora_dir, data) -> Path:
    files = LoraFiles(entry, lora_dir)
    files.target.parent.mkdir(parents=True, exist_ok=True)
    files.target.write_bytes(data)
    make_folders(lora_dir)
    files.write_record(verify_file(entry, files.target))
    return files.target


def test_layout_under_the_lora_folder(tmp_path):
    files = LoraFiles(load_registry()["sdxl"], str(tmp_path))
    assert files.lora_dir == tmp_path
    state = tmp_path / "LCM-LoRA" / ".state"
    assert (files.target, files.sidecar) == (tmp_path / "LCM-LoRA" / "lcm-lora-sdxl.safetensors",
                                             tmp_path / "LCM-LoRA" / "lcm-lora-sdxl.json")
    assert (files.record, files.lock, files.staging, files.verifying) == (
        state / "lcm-lora-sdxl.record.json", state / "sdxl.lock", state / "sdxl", state / "lcm-lora-sdxl.part")
    assert files.partial_bytes() == 0
    files.partials.mkdir(parents=True)
    (files.partials / "abc.etag.incomplete").write_bytes(b"x" * 10)
    assert files.partial_bytes() == 10


def test_manual_download_hint_names_url_path_size_and_hash(tmp_path):
    files = LoraFiles(load_registry()["sd15"], tmp_path)
    hint = files.manual_download_hint("https://mirror.example/")
    assert "https://mirror.example/latent-consistency/lcm-lora-sdv1-5/resolve/cf2fced5" in hint
    assert str(files.target) in hint and "134621556 bytes" in hint and files.entry.sha256 in hint
    unconfirmed = LoraFiles(load_registry()["ssd1b"], tmp_path).manual_download_hint()
    assert "checked by its safetensors header" in unconfirmed


def test_record_notices_changed_files_and_changed_registry(tmp_path):
    data = lora_bytes(768)
    entry = entry_for(data)
    path = _install_by_hand(entry, tmp_path, data)
    assert LoraFiles(entry, tmp_path).recorded_verification() == "sha256"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert LoraFiles(entry, tmp_path).recorded_verification() is None
    _install_by_hand(entry, tmp_path, data)
    other = entry_for(lora_bytes(768, seed=9))
    assert LoraFiles(other, tmp_path).recorded_verification() is None  # same stem, different expected file
    path.unlink()
    assert LoraFiles(entry, tmp_path).recorded_verification() is None


def test_status_rows_describe_installed_and_missing(tmp_path):
    data = lora_bytes(768)
    registry = parse_registry(registry_json({
        "sd15": {"repo_id": "org/a", "revision": "a" * 40, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "ssd1b": {"repo_id": "org/b", "revision": "main", "size": None, "sha256": None, "verified": False,
                  "context_dim": 2048, "sd_version": "SDXL"},
    }))
    _install_by_hand(registry["sd15"], tmp_path, data)
    rows = {row["variant"]: row for row in weights_status(tmp_path, registry)}
    assert rows["sd15"]["installed"] and rows["sd15"]["verified"] and rows["sd15"]["size"] == len(data)
    assert rows["sd15"]["sha256_known"] and rows["sd15"]["sha256"] == registry["sd15"].sha256
    assert not rows["ssd1b"]["installed"] and not rows["ssd1b"]["verified"] and not rows["ssd1b"]["sha256_known"]
    assert rows["ssd1b"]["path"] == str(tmp_path / "LCM-LoRA" / "test-ssd1b.safetensors")
    assert set(rows["sd15"]) == {
        "variant", "family", "title", "stem", "path", "installed", "verified", "verification", "size", "expected_size",
        "sha256", "expected_sha256", "sha256_known", "repo_id", "revision", "url", "partial_bytes"}
    assert [row["variant"] for row in weights_status(tmp_path)][:3] == ["sd15", "sdxl", "ssd1b"]


def test_sidecar_card_uses_the_webui_lora_tab_keys_and_keeps_user_edits(tmp_path):
    files = LoraFiles(load_registry()["sdxl"], tmp_path)
    make_folders(tmp_path)
    files.write_sidecar()
    card = json.loads(files.sidecar.read_text())
    # extensions-builtin/Lora/ui_edit_user_metadata.py save_lora_user_metadata() keys, A1111 1.10.1
    assert set(card) == {"description", "sd version", "activation text", "preferred weight", "negative text", "notes"}
    assert card["sd version"] == "SDXL" and "latent-consistency/lcm-lora-sdxl" in card["description"]
    assert "openrail++" in card["description"]
    # The host's own "LCM" sampler is not the one to use (README): name ours, from the parameter table.
    assert "use with the LCM-LoRA sampler (or LCM-LoRA TCD)" in card["description"]
    files.sidecar.write_text(json.dumps({"sd version": "SDXL", "notes": "mine"}))
    files.write_sidecar()
    assert json.loads(files.sidecar.read_text())["notes"] == "mine"


def test_make_folders_under_a_file_is_a_filesystem_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WeightsFilesystemError, match="creating"):
        make_folders(blocker / "Lora")
