"""lib_lcm.weights.verification: sha256 and size for confirmed entries, the LoRA header check for the others."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from lib_lcm.weights.registry import WeightsEntry, parse_registry
from lib_lcm.weights.verification import Verification, sha256_file, verify_file
from tests.fakehub import lora_bytes, registry_json


def entry_for(data: bytes | None, context_dim=768, **fields) -> WeightsEntry:
    base = {"repo_id": "org/repo", "revision": "a" * 40}
    if data is not None:
        base.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    else:
        base.update(size=None, sha256=None, verified=False, revision="main")
    base.update(context_dim=context_dim, **fields)
    return parse_registry(registry_json({"v": base}))["v"]


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=1 << 20) == hashlib.sha256(data).hexdigest()


def test_verify_by_sha256_and_size(tmp_path):
    data = lora_bytes(768)
    entry = entry_for(data)
    path = tmp_path / "f.safetensors"
    path.write_bytes(data)
    assert verify_file(entry, path) == Verification(True, "sha256", entry.sha256, len(data))
    flipped = bytearray(data)
    flipped[-1] ^= 1
    path.write_bytes(bytes(flipped))
    result = verify_file(entry, path)
    assert not result.ok and "sha256" in result.problem
    path.write_bytes(data + b"x")
    assert "size" in verify_file(entry, path).problem


def test_verify_by_header_for_unconfirmed_entries(tmp_path):
    entry = entry_for(None, context_dim=2048)
    path = tmp_path / "f.safetensors"
    path.write_bytes(lora_bytes(2048))
    result = verify_file(entry, path)
    assert result.ok and result.method == "header" and result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(lora_bytes(768))
    assert "cross-attention width" in verify_file(entry, path).problem
    path.write_bytes(lora_bytes(2048, extra={"model.diffusion_model.out.2.weight": np.zeros((4, 4), np.float16)}))
    assert "not LoRA weights" in verify_file(entry, path).problem
    path.write_bytes(lora_bytes(2048)[:-5])
    problem = verify_file(entry, path).problem
    assert "not a complete safetensors" in problem and "truncated" in problem and str(path) not in problem
