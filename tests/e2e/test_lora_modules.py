"""Every module of our LCM-LoRA files is applied on the real A1111 (issue 17).

A1111 1.6-1.10 name SDXL's and SSD-1B's up-block-0 upsampler with SD 1.x's rule and drop that module of their
LCM-LoRAs (a debug-level log line only); the extension gives the host's loader the loaded UNet's name for it.
Counted from the host's own state after a generation (its loaded network's modules, the layer's weight backup).
The Forges map every module from the model's config themselves: there the count is of the UNet weights their
patcher patches, on the full-width SDXL and SSD-1B (test_lcm_models.py, `test_sdxl_family_checkpoints_...`).
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lib_lcm.safetensors_header import read_header
from lib_lcm.weights.verification import lora_modules
from tests.e2e.test_lcm_webui import generate, lcm, with_checkpoint

pytestmark = pytest.mark.e2e

UPSAMPLER = "lora_unet_up_blocks_0_upsamplers_0_conv"


@pytest.fixture(scope="module")
def a1111(webui_factory, webui_extensions, tiny_webui_models, webui_installation):
    if webui_installation.is_forge:
        pytest.skip("A1111's loader: the Forges map every module from the model's config (counted in "
                    "test_lcm_models.py::test_sdxl_family_checkpoints_get_their_own_lora)")
    models = tiny_webui_models["models"]
    return webui_factory(extensions=webui_extensions, checkpoints=[models.sdxl, models.ssd1b, models.sd15]).client()


def expected_delta(path, multiplier=1.0):
    """The LoRA's change to the upsampler conv: up @ down * alpha / rank * multiplier (kohya's LoRA)."""
    tensors = load_file(path)
    down, up = tensors[f"{UPSAMPLER}.lora_down.weight"].double(), tensors[f"{UPSAMPLER}.lora_up.weight"].double()
    rank = down.shape[0]
    alpha = float(tensors[f"{UPSAMPLER}.alpha"]) if f"{UPSAMPLER}.alpha" in tensors else rank
    out_channels = up.shape[0]
    return (up.reshape(out_channels, rank) @ down.reshape(rank, -1)).reshape(out_channels, *down.shape[1:]) * (
        alpha / rank * multiplier)


@pytest.mark.parametrize("checkpoint, stem", [("tiny-sdxl", "lcm-lora-sdxl"), ("tiny-ssd-1b", "lcm-lora-ssd-1b")])
def test_every_module_of_the_sdxl_family_lcm_lora_is_applied(a1111, checkpoint, stem):
    result, _ = generate(a1111, **with_checkpoint(checkpoint), **lcm())
    state = a1111.get(f"/lcm-test/v1/lora?name={stem}")
    modules = lora_modules(read_header(state["file"]))
    assert UPSAMPLER in modules
    assert len(state["applied"]) == len(modules), "the host applies every module of the file"
    assert "diffusion_model_output_blocks_2_2_conv" in state["applied"]
    delta = torch.tensor(state["layer_delta"], dtype=torch.float64)
    torch.testing.assert_close(delta, expected_delta(state["file"]), rtol=1e-4, atol=1e-5)
    assert "LCM-LoRA warning" not in result.infotext


def test_sd15s_lcm_lora_is_applied_as_before(a1111):
    generate(a1111, **with_checkpoint("tiny-sd15"), **lcm())
    state = a1111.get("/lcm-test/v1/lora?name=lcm-lora-sdv1-5&layer=diffusion_model_output_blocks_2_1_conv")
    modules = lora_modules(read_header(state["file"]))
    assert len(state["applied"]) == len(modules) and "diffusion_model_output_blocks_2_1_conv" in state["applied"]
    torch.testing.assert_close(torch.tensor(state["layer_delta"], dtype=torch.float64),
                               expected_delta(state["file"]), rtol=1e-4, atol=1e-5)

