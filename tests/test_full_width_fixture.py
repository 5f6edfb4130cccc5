"""The Forges' full-width models (tests/fixtures/full_width.py): each family is detected as its own architecture
and gets its own LCM-LoRA, the LoRAs have the released module counts, and the streamed writer makes a file
safetensors reads back exactly, leaving nothing under the final name when it fails.

Only layouts and the writer are checked here (the multi-GB files are built for the Forge e2e runs)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lib_lcm.architecture import detect_architecture
from lib_lcm.weights.registry import default_registry_path, load_registry, variant_for_architecture
from tests.fixtures import full_width, layouts, tiny

# family -> (architecture, registry variant, LCM-LoRA modules of the released file)
EXPECTED = {
    "sd15-inpainting": ("sd1-inpaint", "sd15", None),
    "sdxl": ("sdxl", "sdxl", 788),
    "ssd1b": ("ssd1b", "ssd1b", 423),
    "sdxl-inpainting": ("sdxl-inpaint", "sdxl", None),
}


@pytest.mark.parametrize("family", list(full_width.FAMILIES))
def test_each_family_is_detected_as_its_architecture_and_gets_its_lora(family):
    shapes = layouts.real_checkpoint_shapes(full_width.FAMILIES[family].layout)
    architecture, variant, _ = EXPECTED[family]
    assert detect_architecture(shapes) == architecture
    assert variant_for_architecture(architecture, load_registry(default_registry_path())) == variant


@pytest.mark.parametrize("family", ["sdxl", "ssd1b"])
def test_the_lcm_loras_adapt_as_many_modules_as_the_released_files(family):
    unet = {k: v for k, v in layouts.real_checkpoint_shapes(full_width.FAMILIES[family].layout).items()
            if k.startswith("model.diffusion_model.")}
    assert len(layouts.lora_module_shapes(unet)) == EXPECTED[family][2]
    assert full_width.lora_path("/m", family).name == tiny.LCM_LORA_FILES[family]


def test_streamed_file_reads_back_as_the_tensors_made(tmp_path):
    shapes = {"b.weight": (3, 2), "a.position_ids": (1, 4), "c.logit_scale": ()}
    entries = [(key, shape, full_width.stored_dtype(key, shape)) for key, shape in shapes.items()]

    def make(key, shape):
        return tiny.random_tensor("unit", key, shape)

    path = full_width.stream_safetensors(tmp_path / "m.safetensors", entries, make)
    loaded = load_file(str(path))
    assert loaded["a.position_ids"].dtype == torch.int64 and loaded["c.logit_scale"].dtype == torch.float32
    assert loaded["b.weight"].dtype == torch.float16
    for key, shape in shapes.items():
        assert torch.equal(loaded[key], make(key, shape).to(loaded[key].dtype))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_failed_build_leaves_no_file_under_the_final_name(tmp_path):
    def make(key, shape):
        raise OSError("disk full")

    with pytest.raises(OSError):
        full_width.stream_safetensors(tmp_path / "m.safetensors", [("w", (2, 2), torch.float16)], make)
    assert not (tmp_path / "m.safetensors").exists()
