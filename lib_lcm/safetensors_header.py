"""The one reader of safetensors headers: tensor names, shapes and offsets, never tensor data.

Standard library only (install.py reads checkpoint headers at launch). Layout: 8-byte little-endian header
length N, then N bytes of JSON mapping each tensor name to {"dtype", "shape", "data_offsets"} (plus an
optional "__metadata__" entry), then the tensor data, whose end is the end of the file. Nothing is
unpickled and no tensor is loaded.
"""
from __future__ import annotations

import json
import os
import struct

# The format caps the header at 100 MB (safetensors' MAX_HEADER_SIZE); a longer one is no model header.
MAX_HEADER_BYTES = 100_000_000


class SafetensorsHeaderError(ValueError):
    """``path`` is not a complete safetensors file; ``reason`` says why without naming the file."""

    def __init__(self, path, reason: str):
        super().__init__(f"{os.fspath(path)!r} is not a safetensors file: {reason}")
        self.path, self.reason = path, reason


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file, checked against the file size (catches truncation).

    Checks: the header length fits the file and the 100 MB cap, the header is a JSON object, every tensor
    has a valid shape and data_offsets, and the tensor data ends exactly at the end of the file.

    Raises:
        SafetensorsHeaderError (a ValueError): not a complete safetensors file, with the reason.
        OSError: the file cannot be opened or read.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise SafetensorsHeaderError(path, "shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > size - 8:
            raise SafetensorsHeaderError(path, f"header length {length} does not fit a {size}-byte file")
        if length > MAX_HEADER_BYTES:
            raise SafetensorsHeaderError(path, f"header length {length} is over the format's 100 MB cap")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SafetensorsHeaderError(path, f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(path, "header is not a JSON object")
    end = max((_data_end(path, name, info) for name, info in header.items() if name != "__metadata__"), default=0)
    if 8 + length + end != size:
        raise SafetensorsHeaderError(
            path, f"tensor data needs {8 + length + end} bytes but the file has {size} (truncated?)"
        )
    return header


def _data_end(path, name: str, info) -> int:
    """Where tensor ``name``'s data ends, after checking its shape and offsets."""
    shape = info.get("shape") if isinstance(info, dict) else None
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    if not (
        isinstance(shape, list) and all(_is_count(d) for d in shape)
        and isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
    ):
        raise SafetensorsHeaderError(path, f"tensor {name!r} has no valid shape/data_offsets")
    start, stop = offsets
    if start > stop:
        raise SafetensorsHeaderError(path, f"tensor {name!r} has invalid offsets {offsets}")
    return stop


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from ``read_header(path)`` ("__metadata__" skipped); same errors."""
    return {name: tuple(info["shape"]) for name, info in read_header(path).items() if name != "__metadata__"}
