"""Variant resolution and inpainting on the real WebUI: the LoRA that fits the loaded checkpoint
(SD 1.5, SD 1.5 inpainting, SDXL, SSD-1B, SDXL inpainting), LCM on the SDXL family (timesteps, UNet rows, hires,
img2img strength), and img2img inpainting through the host's mask blending.

A1111 loads the tiny fixtures; the Forges recognise a model by its real widths and load the full-width ones
(tests/fixtures/full_width.py, next to the SD 1.5 of ``LCM_E2E_FORGE_MODELS``; a family not built there skips
with one line). One Forge server at a time: an SDXL-size server holds ~15 GB on CPU."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_lcm.safetensors_header import read_header
from lib_lcm.schedules import lcm_timesteps
from lib_lcm.weights.verification import lora_modules
from tests.e2e.conftest import family_checkpoint, hires_upscaler, host_loads_ssd1b, sdxl_size_args
from tests.e2e.test_lcm_webui import generate, infotext_prompt, lcm, with_checkpoint
from tests.e2e.webui import WebUIError

pytestmark = pytest.mark.e2e


SDXL_FAMILY = {"sdxl": "lcm-lora-sdxl", "ssd1b": "lcm-lora-ssd-1b"}


@pytest.fixture(scope="module")
def sdxl_server(webui_factory, webui_extensions, tiny_webui_models, webui_installation):
    """A server with the SDXL and SSD-1B checkpoints this host loads (SDXL first)."""
    families = tiny_webui_models["family_checkpoints"]
    checkpoints = [families[family] for family in SDXL_FAMILY if family in families]
    if not checkpoints:
        family_checkpoint(tiny_webui_models, "sdxl", webui_installation)  # skips, saying how to build it
    return webui_factory(extensions=webui_extensions, checkpoints=checkpoints, args=sdxl_size_args(webui_installation))


@pytest.fixture
def sdxl_webui(sdxl_server, webui_factory):
    return webui_factory.activate(sdxl_server).client()


@pytest.fixture(scope="module")
def sdxl_inpainting_server(webui_factory, webui_extensions, tiny_webui_models, webui_installation):
    """SDXL-inpainting on a server of its own: reForge keeps the models it switched away from (a third SDXL-size
    model in one server passed 23 GB RSS on CPU)."""
    checkpoint = family_checkpoint(tiny_webui_models, "sdxl-inpainting", webui_installation)
    return webui_factory(extensions=webui_extensions, checkpoints=[checkpoint], args=sdxl_size_args(webui_installation))


@pytest.fixture
def sdxl_inpainting_webui(sdxl_inpainting_server, webui_factory):
    return webui_factory.activate(sdxl_inpainting_server).client()


def checkpoint_name(tiny_webui_models, family, installation):
    return family_checkpoint(tiny_webui_models, family, installation).stem


def test_sdxl_alias_resolves_to_the_sdxl_lora(sdxl_webui, tiny_webui_models, webui_installation):
    name = checkpoint_name(tiny_webui_models, "sdxl", webui_installation)
    result, _ = generate(sdxl_webui, prompt="a cat <lora:lcm>", sampler_name="Euler", steps=4,
                         **with_checkpoint(name))
    assert "<lora:lcm-lora-sdxl>" in infotext_prompt(result.infotext)


def test_sdxl_cfg_1_5_runs_the_negative_prompt_where_the_hosts_sampler_does(sdxl_webui, tiny_webui_models,
                                                                           webui_installation):
    settings = with_checkpoint(checkpoint_name(tiny_webui_models, "sdxl", webui_installation))
    _, ours = generate(sdxl_webui, **settings, **lcm(cfg_scale=1.5))
    _, host = generate(sdxl_webui, sampler_name="Euler", steps=4, cfg_scale=1.5, **settings)
    assert ours["rows"] == host["rows"] and ours["rows"] in (8, 7)  # 7: Forge Classic's uncond-free first step
    assert ours["timesteps"] == [999, 759, 499, 259]


def test_sdxl_hires_fix_runs_the_second_pass_with_lcm_and_the_lora(sdxl_webui, tiny_webui_models,
                                                                   webui_installation):
    name = checkpoint_name(tiny_webui_models, "sdxl", webui_installation)
    forge = {"hr_additional_modules": ["Use same choices"]} if webui_installation.is_forge else {}
    result, probe = generate(sdxl_webui, enable_hr=True, hr_scale=2, hr_upscaler=hires_upscaler(sdxl_webui), denoising_strength=0.5,
                             hr_sampler_name="Euler a", hr_second_pass_steps=20, **forge, **with_checkpoint(name),
                             **lcm())
    assert result.image.size == (128, 128)
    assert probe["timesteps"] == [999, 759, 499, 259] + lcm_timesteps(4, strength=0.5)
    assert probe["rows"] == 8 and "LCM-LoRA: lcm-lora-sdxl" in result.infotext


@pytest.mark.parametrize("strength", [0.75, 0.3])
def test_sdxl_img2img_runs_the_full_step_count_from_the_strengths_noise_level(sdxl_webui, strength,
                                                                              tiny_webui_models, webui_installation):
    name = checkpoint_name(tiny_webui_models, "sdxl", webui_installation)
    init = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    result, probe = generate(sdxl_webui, mode="img2img", init_image=init, denoising_strength=strength,
                             **with_checkpoint(name), **lcm())
    assert probe["timesteps"] == lcm_timesteps(4, strength=strength) and probe["rows"] == 4
    assert 'Lora hashes: "lcm-lora-sdxl: ' in result.infotext


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


@pytest.mark.parametrize("family", list(SDXL_FAMILY))
def test_sdxl_family_checkpoints_get_their_own_lora(sdxl_webui, family, tiny_webui_models, webui_installation):
    """Runs after the other SDXL tests (one checkpoint switch). On the Forges also: the host patches every module of
    the LoRA file into the UNet (788 / 423; A1111's loader is counted in test_lora_modules.py)."""
    stem = SDXL_FAMILY[family]
    name = checkpoint_name(tiny_webui_models, family, webui_installation)
    result, probe = generate(sdxl_webui, **with_checkpoint(name), **lcm())
    assert f"LCM-LoRA: {stem}" in result.infotext and "LCM-LoRA warning" not in result.infotext
    assert infotext_prompt(result.infotext).count(f"<lora:{stem}:1>") == 1
    assert f'Lora hashes: "{stem}: ' in result.infotext and "Lora not found" not in result.infotext
    assert probe["timesteps"] == [999, 759, 499, 259] and probe["rows"] == 4
    if webui_installation.is_forge:
        patches = sdxl_webui.get("/lcm-test/v1/unet-patches")
        keys = patches.get(stem, patches.get("*"))  # Forge: per file; reForge, Forge Classic: all files together
        lora_file = tiny_webui_models["loras"][f"LCM-LoRA/{stem}.safetensors"]
        assert len(keys) == len(lora_modules(read_header(lora_file))), "the host patches every module of the file"
        assert "diffusion_model.output_blocks.2.2.conv.weight" in keys  # up-block 0's upsampler (A1111 misnamed it)


# Checkpoint family -> the LCM-LoRA it gets (an inpainting model, its base model's)
INPAINTING = {"sdxl-inpainting": "lcm-lora-sdxl", "sd15": "lcm-lora-sdv1-5", "sd15-inpainting": "lcm-lora-sdv1-5"}


# only_masked varies fastest: each family's server (one at a time on the Forges) runs both cases in a row
@pytest.mark.parametrize("only_masked", [False, True])
@pytest.mark.parametrize("family", list(INPAINTING))
def test_inpainting_runs_lcm_with_the_hosts_mask_blending(request, family, only_masked, webui_installation,
                                                          tiny_webui_models):
    name = checkpoint_name(tiny_webui_models, family, webui_installation)
    # SD 1.5's checkpoints are on the session server, SDXL-inpainting on a server of its own
    webui = request.getfixturevalue("sdxl_inpainting_webui" if family == "sdxl-inpainting" else "webui")
    init = Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8))
    result, probe = generate(
        webui, mode="img2img", init_image=init, mask=encode(mask_image()), inpainting_fill=1,
        inpaint_full_res=only_masked, inpaint_full_res_padding=8, denoising_strength=0.75,
        **with_checkpoint(name), **lcm())
    assert f"LCM-LoRA: {INPAINTING[family]}" in result.infotext and "LCM-LoRA warning" not in result.infotext
    assert probe["timesteps"] == lcm_timesteps(4, strength=0.75) and probe["rows"] == 4
    pixels = np.asarray(result.image.convert("RGB"), dtype=np.int16)
    original = np.asarray(init, dtype=np.int16)
    # Outside the mask (and its blur) the host keeps the original; inside, LCM painted something new.
    assert np.abs(pixels[:8, :8] - original[:8, :8]).max() <= 2
    assert np.abs(pixels[24:40, 24:40] - original[24:40, 24:40]).mean() > 5


def test_a_host_without_ssd1b_in_its_model_list_refuses_it(sdxl_webui, tiny_webui_models, webui_installation):
    """Forge Classic and Forge Neo (docs/compatibility.md, note 16): the host's own loader refuses SSD-1B, with
    LCM-LoRA off and the host's own sampler, so the SSD-1B cases skip there as a host limitation. Fails when such a
    host learns SSD-1B: then its SSD-1B cases run."""
    if host_loads_ssd1b(webui_installation):
        pytest.skip("this host's model list has SSD-1B: its SSD-1B cases run instead")
    checkpoint = tiny_webui_models["family_checkpoints"].get("ssd1b")
    if checkpoint is None:
        pytest.skip("no ssd1b checkpoint: build it with `python -m tests.fixtures.full_width --family ssd1b`")
    with pytest.raises(WebUIError, match="HTTP 500") as refused:
        generate(sdxl_webui, sampler_name="Euler", steps=4, **with_checkpoint(checkpoint.stem))
    assert "Failed to recognize model" in str(refused.value) or "set_manual_cast" in str(refused.value)
