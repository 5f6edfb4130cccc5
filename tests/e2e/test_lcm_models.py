"""Variant resolution and inpainting on the real WebUI: the LoRA that fits the loaded checkpoint
(SD 1.5, SD 1.5 inpainting, SDXL, SSD-1B), and img2img inpainting through the host's mask blending."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_lcm.schedules import lcm_timesteps
from tests.e2e.test_lcm_webui import SKIP_PREVIEWS, generate, infotext_prompt, lcm

pytestmark = pytest.mark.e2e


FORGE_TINY = "Forge loads none of the tiny fixtures (it recognises a model by its real widths)"


@pytest.fixture(scope="module")
def sdxl_webui(webui_factory, webui_extensions, tiny_webui_models, webui_installation):
    if webui_installation.is_forge:
        pytest.skip(f"{FORGE_TINY}: no SDXL / SSD-1B checkpoint to switch to on Forge")
    models = tiny_webui_models["models"]
    return webui_factory(extensions=webui_extensions, checkpoints=[models.sdxl, models.ssd1b]).client()


def with_checkpoint(name):
    return {"override_settings": {**SKIP_PREVIEWS["override_settings"], "sd_model_checkpoint": name}}


@pytest.mark.parametrize("checkpoint, stem", [("tiny-sdxl", "lcm-lora-sdxl"), ("tiny-ssd-1b", "lcm-lora-ssd-1b")])
def test_sdxl_family_checkpoints_get_their_own_lora(sdxl_webui, checkpoint, stem):
    result, probe = generate(sdxl_webui, **with_checkpoint(checkpoint), **lcm())
    assert f"LCM-LoRA: {stem}" in result.infotext
    assert infotext_prompt(result.infotext).count(f"<lora:{stem}:1>") == 1
    assert f'Lora hashes: "{stem}: ' in result.infotext and "Lora not found" not in result.infotext
    assert probe["timesteps"] == [999, 759, 499, 259] and probe["rows"] == 4


def test_sdxl_alias_resolves_to_the_sdxl_lora(sdxl_webui):
    result, _ = generate(sdxl_webui, prompt="a cat <lora:lcm>", sampler_name="Euler", steps=4,
                         **with_checkpoint("tiny-sdxl"))
    assert "<lora:lcm-lora-sdxl>" in infotext_prompt(result.infotext)


def mask_image():
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(mask)


def encode(image):
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("checkpoint", ["tiny-sd15", "tiny-sd15-inpainting"])
@pytest.mark.parametrize("only_masked", [False, True])
def test_inpainting_runs_lcm_with_the_hosts_mask_blending(webui, checkpoint, only_masked, webui_installation,
                                                          tiny_webui_models):
    if webui_installation.is_forge:
        if checkpoint != "tiny-sd15":
            pytest.skip(f"{FORGE_TINY}: no SD 1.5 inpainting checkpoint on Forge")
        checkpoint = tiny_webui_models["sd15_checkpoint"].stem  # Forge's SD 1.5 checkpoint
    init = Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8))
    result, probe = generate(
        webui, mode="img2img", init_image=init, mask=encode(mask_image()), inpainting_fill=1,
        inpaint_full_res=only_masked, inpaint_full_res_padding=8, denoising_strength=0.75,
        **with_checkpoint(checkpoint), **lcm())
    assert "LCM-LoRA: lcm-lora-sdv1-5" in result.infotext
    assert probe["timesteps"] == lcm_timesteps(4, strength=0.75)
    pixels = np.asarray(result.image.convert("RGB"), dtype=np.int16)
    original = np.asarray(init, dtype=np.int16)
    # Outside the mask (and its blur) the host keeps the original; inside, LCM painted something new.
    assert np.abs(pixels[:8, :8] - original[:8, :8]).max() <= 2
    assert np.abs(pixels[24:40, 24:40] - original[24:40, 24:40]).mean() > 5
