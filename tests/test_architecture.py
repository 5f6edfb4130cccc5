"""lib_lcm.architecture on real-size key sets (shapes only) and tiny fixtures (files that are no safetensors
file: tests/test_safetensors_header.py; the variant of each label: tests/test_registry.py)."""
from __future__ import annotations

import re

import pytest
import torch

from lib_lcm import architecture
from lib_lcm.architecture import SD_ARCHITECTURES, detect_architecture, detect_checkpoint
from tests.fixtures import layouts, tiny

LABELS = list(SD_ARCHITECTURES)  # the other families: tests/test_dit_families.py


def only(shapes, *prefixes):
    return {k: v for k, v in shapes.items() if k.startswith(prefixes)}


def without(shapes, *prefixes):
    return {k: v for k, v in shapes.items() if not k.startswith(prefixes)}


@pytest.mark.parametrize("label", LABELS)
def test_real_layouts(label):
    assert detect_architecture(layouts.real_checkpoint_shapes(label)) == label


@pytest.mark.parametrize("label", LABELS)
def test_tiny_layouts(label):
    assert detect_architecture(tiny.tiny_checkpoint_shapes(label)) == label


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("size", ["real", "tiny"])
def test_unet_only_files(label, size):
    shapes = layouts.real_checkpoint_shapes(label) if size == "real" else tiny.tiny_checkpoint_shapes(label)
    unet = only(shapes, "model.diffusion_model.")
    assert detect_architecture(unet) == label
    bare = {k[len("model."):]: v for k, v in unet.items()}
    assert detect_architecture(bare) == label


def test_v_prediction_and_torch_sizes():
    # SD2 768-v has the SD2 base shapes; a state dict's torch.Size values work as shapes.
    shapes = {k: torch.Size(v) for k, v in layouts.real_checkpoint_shapes("sd2").items()}
    assert detect_architecture(shapes) == "sd2"


def test_tiny_files_on_disk(tiny_models):
    assert detect_checkpoint(tiny_models.sd15) == "sd1"
    assert detect_checkpoint(tiny_models.sd15_inpainting) == "sd1-inpaint"
    assert detect_checkpoint(tiny_models.sdxl) == "sdxl"
    assert detect_checkpoint(tiny_models.ssd1b) == "ssd1b"
    for lora in (tiny_models.lcm_lora_sd15, tiny_models.lcm_lora_sdxl, tiny_models.style_lora):
        assert detect_checkpoint(lora) == "unknown"


@pytest.mark.parametrize(
    "label,text_encoder_from",
    [("sd1", "sd2"), ("sd2", "sd1"), ("sdxl", "sdxl-refiner"), ("sdxl-refiner", "sdxl"), ("ssd1b", "sd1")],
)
def test_text_encoder_of_another_family_is_unknown(label, text_encoder_from):
    unet = only(layouts.real_checkpoint_shapes(label), "model.diffusion_model.")
    text = without(layouts.real_checkpoint_shapes(text_encoder_from), "model.", "first_stage_model.")
    assert detect_architecture({**unet, **text}) == "unknown"


def test_text_encoder_width_must_fit_the_unet():
    shapes = tiny.tiny_checkpoint_shapes("sd1")
    real_text = only(layouts.real_checkpoint_shapes("sd1"), "cond_stage_model.")
    assert detect_architecture({**without(shapes, "cond_stage_model."), **real_text}) == "unknown"
    sdxl = tiny.tiny_checkpoint_shapes("sdxl")
    assert detect_architecture(without(sdxl, "conditioner.embedders.1.")) == "unknown"


def test_other_structures_are_unknown():
    sd1 = layouts.real_checkpoint_shapes("sd1")
    pix2pix = {**sd1, "model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3)}
    assert detect_architecture(pix2pix) == "unknown"
    # Segmind Vega: SDXL pruned to 1/2 transformer blocks; the SSD-1B LoRA does not fit it.
    vega = layouts.unet_shapes(layouts.UNetConfig(
        model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 1, 2), transformer_depth_middle=None,
        context_dim=2048, use_linear_in_transformer=True, adm_in_channels=2816,
    ))
    assert detect_architecture(vega) == "unknown"
    sdxl = layouts.real_checkpoint_shapes("sdxl")
    sdxl_with_a_gap = {k: v for k, v in sdxl.items() if ".middle_block.1.transformer_blocks.1." not in k}
    assert detect_architecture(sdxl_with_a_gap) == "unknown"
    sdxl_with_one_middle_block = {k: v for k, v in sdxl.items()
                                  if not re.search(r"\.middle_block\.1\.transformer_blocks\.[1-9]\.", k)}
    assert detect_architecture(sdxl_with_one_middle_block) == "unknown"
    ssd_inpaint = {**layouts.real_checkpoint_shapes("ssd1b"),
                   "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}
    assert detect_architecture(ssd_inpaint) == "unknown"
    sd1_without_attention = {k: v for k, v in sd1.items() if ".1.transformer_blocks." not in k}
    assert detect_architecture(sd1_without_attention) == "unknown"


def test_non_ldm_models_are_unknown():
    sd1_unet = only(layouts.real_checkpoint_shapes("sd1"), "model.diffusion_model.")
    diffusers = {}
    for key, shape in sd1_unet.items():
        module, _, param = key[len("model.diffusion_model."):].rpartition(".")
        name = layouts.ldm_to_diffusers_module(module)
        if name:
            diffusers[f"{name}.{param}"] = shape
    assert diffusers
    assert detect_architecture(diffusers) == "unknown"
    assert detect_architecture({"unet." + k: v for k, v in diffusers.items()}) == "unknown"
    # Flux without the QK-norm key Forge Neo's detection tests for it (the named families: test_dit_families.py)
    flux_part = {"double_blocks.0.img_attn.qkv.weight": (9216, 3072), "img_in.weight": (3072, 64)}
    cascade = {"down_blocks.0.0.channelwise.0.weight": (2048, 512), "clip_txt_mapper.weight": (8192, 1280)}
    lora = {f"{k}.lora_down.weight": (4, 32) for k in layouts.lora_module_shapes(sd1_unet)}
    vae_only = only(layouts.real_checkpoint_shapes("sd1"), "first_stage_model.")
    for shapes in (flux_part, cascade, lora, vae_only, {}):
        assert detect_architecture(shapes) == "unknown"


def test_every_result_is_a_declared_label():
    results = {detect_architecture(layouts.real_checkpoint_shapes(label)) for label in LABELS}
    results.add(detect_architecture({}))
    assert results <= set(architecture.ARCHITECTURES)
