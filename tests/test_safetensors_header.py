"""lib_lcm.safetensors_header: the one header reader, on real files, header-only files, truncated files and
files that are no safetensors file at all."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lib_lcm.architecture import detect_checkpoint
from lib_lcm.safetensors_header import SafetensorsHeaderError, read_header, read_shapes
from tests.fakehub import lora_bytes
from tests.fixtures import tiny


def write_header(path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_header_shapes_match_safetensors_and_skip_metadata(tiny_models):
    shapes = read_shapes(tiny_models.lcm_lora_sd15)
    with safe_open(str(tiny_models.lcm_lora_sd15), "pt") as f:
        assert shapes == {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert "__metadata__" not in shapes and shapes


def test_reads_the_header_only(tmp_path):
    # How the tests and the bench write checkpoints without weights: every tensor at data_offsets [0, 0],
    # an empty data section. Shapes are read; loading a tensor would fail.
    path = tmp_path / "header-only.safetensors"
    shapes = tiny.tiny_checkpoint_shapes("sdxl")
    write_header(path, {"__metadata__": {"format": "pt"},
                        **{k: {"dtype": "F32", "shape": list(v), "data_offsets": [0, 0]} for k, v in shapes.items()}})
    assert read_shapes(path) == shapes
    assert detect_checkpoint(path) == "sdxl"


def test_a_header_whose_tensor_data_is_missing_is_truncated(tmp_path):
    # One reader for checkpoints and LoRAs: a copy cut short is no complete file, whatever its header says.
    path = tmp_path / "truncated.safetensors"
    shapes = tiny.tiny_checkpoint_shapes("sdxl")
    offset, header = 0, {"__metadata__": {"format": "pt"}}
    for k, v in shapes.items():
        size = 4
        for d in v:
            size *= d
        header[k] = {"dtype": "F32", "shape": list(v), "data_offsets": [offset, offset + size]}
        offset += size
    write_header(path, header)
    with pytest.raises(ValueError, match="truncated"):
        read_shapes(path)
    assert detect_checkpoint(path) == "unknown"


def test_small_real_safetensors_file(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(2, 3), "b": torch.zeros(())}, str(path), metadata={"k": "v"})
    assert read_shapes(path) == {"a": (2, 3), "b": ()}
    assert read_header(path)["__metadata__"] == {"k": "v"}
    assert detect_checkpoint(path) == "unknown"


def test_header_reader_accepts_real_files_and_catches_truncation(tmp_path):
    data = lora_bytes(768)
    path = tmp_path / "lora.safetensors"
    path.write_bytes(data)
    header = read_header(path)
    assert any(k.endswith("attn2_to_k.lora_down.weight") for k in header)
    path.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(ValueError, match="does not fit"):
        read_header(path)
    path.write_bytes(b"PK\x03\x04 a zip, i.e. a pickled torch file")
    with pytest.raises(ValueError):
        read_header(path)


def framed(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


def not_safetensors_files(tmp_path):
    files = {}
    files["empty"] = b""
    files["short"] = b"\x01\x02"
    files["text"] = b"this is a text file, not a model\n" * 4
    files["huge-length"] = struct.pack("<Q", 2**60) + b"{}"
    files["not-json"] = struct.pack("<Q", 4) + b"\xff\xfe{}"
    files["json-list"] = struct.pack("<Q", 2) + b"[]"
    files["no-shape"] = framed(b'{"a": {"dtype": "F32", "data_offsets": [0, 0]}}')
    files["bad-shape"] = framed(b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}')
    files["no-offsets"] = framed(b'{"a": {"dtype": "F32", "shape": [1]}}')
    files["backwards-offsets"] = framed(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}') + b"\0" * 4
    files["bool-shape"] = framed(b'{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}') + b"\0" * 4
    pickle_path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}}, pickle_path)
    files["pickle"] = pickle_path.read_bytes()
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        paths[name].write_bytes(data)
    # A header longer than the format's 100 MB cap, in a (sparse) file large enough to hold it.
    paths["over-the-cap"] = tmp_path / "over-the-cap.safetensors"
    with open(paths["over-the-cap"], "wb") as f:
        f.write(struct.pack("<Q", 100_000_001) + b"{")
        f.truncate(8 + 100_000_001)
    return paths


def test_not_safetensors_raises_a_clear_value_error(tmp_path):
    for name, path in not_safetensors_files(tmp_path).items():
        with pytest.raises(ValueError, match="is not a safetensors file") as info:
            read_shapes(path)
        assert str(path) in str(info.value), name
        assert isinstance(info.value, SafetensorsHeaderError) and info.value.reason in str(info.value), name
        assert detect_checkpoint(path) == "unknown", name


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_shapes(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        detect_checkpoint(tmp_path / "missing.safetensors")
