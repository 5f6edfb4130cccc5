"""lib_lcm.webui_folders: the WebUI's folders from COMMANDLINE_ARGS, and the variants its checkpoints need."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from lib_lcm.registry import REGISTRY_ENV, load_registry, parse_registry
from lib_lcm.webui_folders import WebuiDirs, variants_for_checkpoints, webui_dirs
from tests.fakehub import registry_json
from tests.fixtures import layouts


@pytest.fixture(autouse=True)
def _no_registry_override(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


def header_only_checkpoint(path: Path, label: str) -> Path:
    header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]}
              for k, v in layouts.real_checkpoint_shapes(label).items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def test_webui_dirs_follow_a1111_defaults_and_flags(tmp_path):
    root = tmp_path / "webui"
    (root / "modules").mkdir(parents=True)
    (root / "modules" / "paths_internal.py").write_text("")
    extension = tmp_path / "data" / "extensions" / "sd-webui-lcm-lora"
    env = {"PYTHONPATH": str(root)}
    # An extension in <data>/extensions: the data dir is there, even if --data-dir was not in COMMANDLINE_ARGS.
    dirs = webui_dirs(extension, "", env)
    assert dirs == WebuiDirs(tmp_path / "data" / "models" / "Lora", (tmp_path / "data" / "models" / "Stable-diffusion",))
    # A checkout elsewhere: the WebUI root on PYTHONPATH.
    dev_checkout = tmp_path / "src" / "sd-webui-lcm-lora"
    assert webui_dirs(dev_checkout, "", env).lora_dir == root / "models" / "Lora"
    data = tmp_path / "my data"
    dirs = webui_dirs(extension, f"--data-dir '{data}' --ckpt-dir /ckpts", env)
    assert dirs.lora_dir == data / "models" / "Lora"
    assert dirs.checkpoint_dirs == (data / "models" / "Stable-diffusion", Path("/ckpts"))
    dirs = webui_dirs(extension, f"--data-dir {data} --models-dir /m --lora-dir=/l --xformers", env)
    assert dirs == WebuiDirs(Path("/l"), (Path("/m/Stable-diffusion"),))
    assert webui_dirs(extension, "--lora-dir 'unterminated", env).lora_dir == tmp_path / "data" / "models" / "Lora"


def test_variants_for_checkpoints_uses_headers_once_and_defaults_to_sd15(tmp_path):
    registry = load_registry()
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
    assert variants_for_checkpoints([folder], registry, cache, detect, variant_for) == ["sdxl"]
    assert sorted(seen) == ["a.safetensors", "b.safetensors"]  # .ckpt is never opened (pickle)
    seen.clear()
    assert variants_for_checkpoints([folder], registry, cache, detect, variant_for) == ["sdxl"]
    assert seen == []
    (folder / "a.safetensors").write_bytes(b"changed!")
    labels["a.safetensors"] = "sd1"
    assert variants_for_checkpoints([folder], registry, cache, detect, variant_for) == ["sd15"]
    assert seen == ["a.safetensors"]
    assert variants_for_checkpoints([tmp_path / "none"], registry, None, detect, variant_for) == ["sd15"]
    cache.unlink()
    seen.clear()
    assert variants_for_checkpoints([folder], registry, cache, detect, variant_for, time_budget=-1) == ["sd15"]
    assert seen == [] and not cache.exists()  # nothing read, nothing cached: the next launch reads them


def test_variants_for_checkpoints_with_the_real_detector(tmp_path):
    folder = tmp_path / "Stable-diffusion"
    folder.mkdir()
    for label in ("sdxl", "ssd1b"):
        header_only_checkpoint(folder / f"{label}.safetensors", label)
    assert sorted(variants_for_checkpoints([folder], load_registry())) == ["sdxl", "ssd1b"]


def test_variants_for_checkpoints_follow_the_registrys_architectures(tmp_path):
    # A registry with its own variant ids and stems: the checkpoints' labels map through its `architectures`.
    common = {"revision": "a" * 40, "size": 1, "sha256": "a" * 64}
    registry = parse_registry(registry_json({
        "sd15": {**common, "repo_id": "org/a", "stem": "house-sd", "architectures": ["sd1"]},
        "big": {**common, "repo_id": "org/b", "stem": "house-xl", "architectures": ["sdxl", "ssd1b"]},
    }))
    folder = tmp_path / "Stable-diffusion"
    folder.mkdir()
    header_only_checkpoint(folder / "ssd.safetensors", "ssd1b")
    assert variants_for_checkpoints([folder], registry) == ["big"]
