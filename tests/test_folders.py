"""lib_lcm.weights.webui_folders: the folders of a WebUI that is really there (from COMMANDLINE_ARGS), and the variants its
checkpoints need."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from lib_lcm.weights.registry import load_registry, parse_registry
from lib_lcm.weights.webui_folders import (
    WebuiDirs,
    WebuiFolderError,
    variants_for_checkpoints,
    wanted_variants,
    webui_dirs,
)
from tests.fakehub import registry_json
from tests.fixtures import layouts


def header_only_checkpoint(path: Path, label: str) -> Path:
    header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]}
              for k, v in layouts.real_checkpoint_shapes(label).items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def make_webui(root: Path) -> Path:
    """A folder with the WebUI's launch files, the way lib_lcm.weights.webui_folders recognises one."""
    (root / "modules").mkdir(parents=True)
    (root / "modules" / "paths_internal.py").write_text("")
    (root / "launch.py").write_text("")
    return root


def dirs_of(extension, flags="", env=None, **where):
    where.setdefault("cwd", "/")
    where.setdefault("prefix", "/usr")
    return webui_dirs(extension, flags, env or {}, **where)


def test_webui_dirs_follow_a1111_defaults_and_flags(tmp_path):
    root = make_webui(tmp_path / "webui")
    extension = root / "extensions" / "sd-webui-lcm-lora"
    dirs = dirs_of(extension)
    assert dirs == WebuiDirs(root / "models" / "Lora", (root / "models" / "Stable-diffusion",))
    data = tmp_path / "my data"
    dirs = dirs_of(extension, f"--data-dir '{data}' --ckpt-dir /ckpts")
    assert dirs.lora_dir == data / "models" / "Lora"
    assert dirs.checkpoint_dirs == (data / "models" / "Stable-diffusion", Path("/ckpts"))
    dirs = dirs_of(extension, f"--data-dir {data} --models-dir /m --lora-dir=/l --xformers")
    assert dirs == WebuiDirs(Path("/l"), (Path("/m/Stable-diffusion"),))
    assert dirs_of(extension, "--lora-dir 'unterminated").lora_dir == root / "models" / "Lora"
    assert dirs_of(extension, "--lora-dir models/../loras").lora_dir == root / "loras"  # relative to the WebUI root


def test_a_data_dir_extension_finds_its_webui_on_pythonpath_or_by_its_venv(tmp_path):
    root = make_webui(tmp_path / "webui")
    extension = tmp_path / "data" / "extensions" / "sd-webui-lcm-lora"
    expected = WebuiDirs(tmp_path / "data" / "models" / "Lora", (tmp_path / "data" / "models" / "Stable-diffusion",))
    # install.py: the WebUI puts its root on PYTHONPATH and runs it from there.
    assert dirs_of(extension, env={"PYTHONPATH": f"/elsewhere{os.pathsep}{root}"}) == expected
    assert dirs_of(extension, cwd=root) == expected
    # The CLI run with the WebUI's own python (<webui>/venv/bin/python).
    assert dirs_of(extension, prefix=root / "venv") == expected
    assert dirs_of(extension, webui_dir=root) == expected


def test_a_checkout_outside_a_webui_is_never_given_a_guessed_folder(tmp_path):
    checkout = tmp_path / "src" / "sd-webui-lcm-lora"
    lookalike = tmp_path / "other" / "extensions" / "sd-webui-lcm-lora"  # an "extensions" folder, no WebUI
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "launch.py").write_text("")  # launch.py alone is not a WebUI
    for extension in (checkout, lookalike):
        with pytest.raises(WebuiFolderError) as caught:
            dirs_of(extension, env={"PYTHONPATH": str(tmp_path / "half")}, cwd=tmp_path / "half")
        assert caught.value.exit_code == 2
        assert "--webui-dir" in str(caught.value) and "--lora-dir" in str(caught.value)
    root = make_webui(tmp_path / "webui")
    assert dirs_of(checkout, env={"PYTHONPATH": str(root)}).lora_dir == root / "models" / "Lora"
    with pytest.raises(WebuiFolderError, match="not a Stable Diffusion WebUI folder"):
        dirs_of(checkout, webui_dir=tmp_path / "half")
    assert not list((tmp_path / "src").rglob("*")) and not (tmp_path / "models").exists()


def test_an_explicit_webui_dir_wins_over_another_webui_around_the_extension(tmp_path):
    here, there = make_webui(tmp_path / "here"), make_webui(tmp_path / "there")
    extension = here / "extensions" / "sd-webui-lcm-lora"
    assert dirs_of(extension).lora_dir == here / "models" / "Lora"
    assert dirs_of(extension, webui_dir=there).lora_dir == there / "models" / "Lora"


def test_paths_are_normalised_and_symlinks_resolved(tmp_path):
    root = make_webui(tmp_path / "real webui")
    (tmp_path / "link").symlink_to(root)
    extension = tmp_path / "link" / "extensions" / "sd-webui-lcm-lora" / ".." / "sd-webui-lcm-lora"
    assert dirs_of(extension).lora_dir == root / "models" / "Lora"


def test_wanted_variants_auto_reads_the_checkpoints_and_writes_nothing(tmp_path):
    registry = load_registry()
    root = make_webui(tmp_path / "webui")
    dirs = dirs_of(root / "extensions" / "x")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    header_only_checkpoint(root / "models" / "Stable-diffusion" / "xl.safetensors", "sdxl")
    assert wanted_variants("auto", registry, dirs) == ["sdxl"]
    assert wanted_variants("all", registry, dirs) == ["sd15", "sdxl", "ssd1b"]
    assert wanted_variants("none", registry, dirs) == []
    assert not (root / "models" / "Lora").exists()


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
