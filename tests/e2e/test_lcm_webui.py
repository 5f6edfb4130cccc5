"""LCM-LoRA inside the real WebUI, over its HTTP API: samplers, the prompt tag, schedule, UNet-call counts,
hires fix, img2img strengths, infotext, API errors, and "disabled changes nothing".

The test-only probe extension (tests/e2e/probe_extension) counts UNet forward calls, batch rows and timesteps.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from lib_lcm.schedules import lcm_timesteps, tcd_timesteps
from tests.e2e.conftest import hires_upscaler

pytestmark = pytest.mark.e2e

STEM = "lcm-lora-sdv1-5"
BASE = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "width": 64, "height": 64, "seed": 1234,
        "steps": 20, "cfg_scale": 7.0, "sampler_name": "Euler a"}
SKIP_PREVIEWS = {"override_settings": {"live_previews_enable": False}}
HOST_LCM_SINCE = (1, 8, 0)  # the release that added the built-in "LCM" sampler
# The X/Y/Z plot's other run() arguments by name (passed in the host's own order): no Y/Z axis, a legend, every
# cell's image returned; reForge's three extra ones and Forge Neo's row count at their UI defaults.
XYZ_ARGS = {"x_values_dropdown": [], "y_type": 0, "y_values": "", "y_values_dropdown": [], "z_type": 0,
            "z_values": "", "z_values_dropdown": [], "draw_legend": True, "include_lone_images": True,
            "include_sub_grids": False, "no_fixed_seeds": False, "vary_seeds_x": False, "vary_seeds_y": False,
            "vary_seeds_z": False, "margin_size": 0, "csv_mode": False,
            "draw_individual_labels": False, "skip_grid": False, "items_per_grid": 0,
            "row_count": 0}


def with_checkpoint(name: str) -> dict:
    """Request fields that generate with checkpoint ``name`` (the host switches to it), previews off."""
    return {"override_settings": {**SKIP_PREVIEWS["override_settings"], "sd_model_checkpoint": name}}


def lcm(**settings):
    return {"alwayson_scripts": {"LCM-LoRA": {"args": [{"enabled": True, **settings}]}}}


def unet_probe(webui):
    return webui.get("/lcm-test/v1/unet")


def reset_probe(webui):
    webui.post("/lcm-test/v1/unet/reset")


def generate(webui, mode="txt2img", init_image=None, **payload):
    reset_probe(webui)
    body = {**BASE, **SKIP_PREVIEWS, **payload}
    result = webui.img2img(init_image, **body) if mode == "img2img" else webui.txt2img(**body)
    return result, unet_probe(webui)


def infotext_prompt(infotext: str) -> str:
    return infotext.split("\n")[0]


def test_our_samplers_are_listed_once_next_to_the_hosts_lcm(webui, webui_version):
    names = [sampler["name"] for sampler in webui.get("/sdapi/v1/samplers")]
    assert names.count("LCM-LoRA") == 1 and names.count("LCM-LoRA TCD") == 1
    assert names.count("LCM") == (1 if webui_version >= HOST_LCM_SINCE else 0)  # the host's own, untouched


def test_enabled_txt2img_sets_sampler_steps_cfg_and_tags_the_prompt_once(webui):
    result, probe = generate(webui, **lcm())
    info = result.infotext
    assert infotext_prompt(info).count(f"<lora:{STEM}:1>") == 1
    assert "Sampler: LCM-LoRA," in info and "Steps: 4," in info and "CFG scale: 1.0," in info
    assert f"LCM-LoRA: {STEM}" in info and "LCM-LoRA weight: 1" in info and "LCM-LoRA mode: LCM" in info
    assert f'Lora hashes: "{STEM}: ' in info and "Lora not found" not in info
    assert probe["timesteps"] == [999, 759, 499, 259]


def test_cfg1_makes_one_unet_row_per_step_and_cfg_1_5_makes_two(webui):
    _, at_1 = generate(webui, batch_size=2, **lcm(cfg_scale=1.0))
    _, at_1_5 = generate(webui, batch_size=2, **lcm(cfg_scale=1.5))
    _, host_at_1_5 = generate(webui, batch_size=2, sampler_name="Euler", steps=4, cfg_scale=1.5)
    assert (at_1["calls"], at_1["rows"]) == (4, 4 * 2)
    # Above CFG 1 the negative-prompt rows run wherever the host's own sampler runs them: every step (A1111,
    # Forge, reForge), every step but the first (Forge Classic: `0 <= step / total <= skip_early_cond` holds at
    # step 0 with the default 0, so its denoiser runs the first step of every sampler at CFG 1).
    assert at_1_5["rows"] == host_at_1_5["rows"]
    assert at_1_5["rows"] in (2 * at_1["rows"], 2 * at_1["rows"] - 2)


def test_hosts_builtin_lcm_runs_the_uncond_pass_at_cfg1_and_another_schedule(webui, webui_version, webui_installation):
    if webui_version < HOST_LCM_SINCE:
        pytest.skip("A1111 < 1.8.0 has no built-in 'LCM' sampler to compare with")
    _, probe = generate(webui, sampler_name="LCM", steps=4, cfg_scale=1.0)
    # Forge drops the uncond pass at CFG 1 for every sampler, its own "LCM" included: only the schedule differs.
    assert probe["rows"] == (1 if webui_installation.is_forge else 2) * 4
    assert probe["timesteps"] != [999, 759, 499, 259]


def test_user_typed_alias_becomes_the_loaded_checkpoints_lora_once(webui):
    result, _ = generate(webui, prompt="a cat <lora:lcm:0.8>", **lcm())
    prompt = infotext_prompt(result.infotext)
    assert prompt.count("<lora:") == 1 and f"<lora:{STEM}:0.8>" in prompt  # the user's weight is respected
    assert f'Lora hashes: "{STEM}: ' in result.infotext


def test_alias_works_with_the_panel_off(webui):
    result, _ = generate(webui, prompt="a cat <lora:lcm>", sampler_name="Euler", steps=4)
    assert f"<lora:{STEM}>" in infotext_prompt(result.infotext)
    assert f'Lora hashes: "{STEM}: ' in result.infotext and "Lora not found" not in result.infotext


def test_other_loras_keep_working_alongside(webui):
    result, _ = generate(webui, prompt="a cat <lora:tiny-style-sd15:0.8>", **lcm())
    prompt = infotext_prompt(result.infotext)
    assert "<lora:tiny-style-sd15:0.8>" in prompt and prompt.count(f"<lora:{STEM}") == 1
    assert "tiny-style-sd15: " in result.infotext and f"{STEM}: " in result.infotext


def test_hires_fix_runs_the_second_pass_with_lcm_and_the_lora(webui, webui_installation):
    # Forge's API leaves `hr_additional_modules` at None, which its hires pass cannot read (a TypeError for
    # any hires request without it, with or without this extension): send the UI's default.
    forge = {"hr_additional_modules": ["Use same choices"]} if webui_installation.is_forge else {}
    result, probe = generate(webui, enable_hr=True, hr_scale=2, hr_upscaler=hires_upscaler(webui), denoising_strength=0.5,
                             hr_sampler_name="Euler a", hr_second_pass_steps=20, **forge, **lcm())
    assert result.image.size == (128, 128)
    assert probe["timesteps"] == [999, 759, 499, 259] + lcm_timesteps(4, strength=0.5)
    assert "Hires prompt" not in result.infotext or f"<lora:{STEM}" in result.infotext.split("Hires prompt")[1]


@pytest.mark.parametrize("strength", [1.0, 0.75, 0.5, 0.3])
def test_img2img_runs_the_full_step_count_from_the_strengths_noise_level(webui, strength):
    from PIL import Image

    init = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    result, probe = generate(webui, mode="img2img", init_image=init, denoising_strength=strength, **lcm())
    assert probe["timesteps"] == lcm_timesteps(4, strength=strength)
    assert f'Lora hashes: "{STEM}: ' in result.infotext


def test_tcd_mode(webui):
    result, probe = generate(webui, **lcm(mode="TCD", gamma=0.5))
    assert "Sampler: LCM-LoRA TCD," in result.infotext and "TCD gamma: 0.5" in result.infotext
    assert probe["timesteps"] == tcd_timesteps(4)


def test_guard_rail_warning_in_infotext(webui):
    result, _ = generate(webui, **lcm(steps=12, cfg_scale=2.5))
    assert "LCM-LoRA warning:" in result.infotext


@pytest.mark.parametrize("args, fragment", [
    ([{"enabled": True, "steps": 0}], "'steps' = 0 is outside 1..16"),
    ([{"enabled": True, "mode": "DDIM"}], "'mode' must be one of LCM, TCD"),
    ([{"enabld": True}], "unknown argument(s) enabld"),
])
def test_bad_api_args_answer_with_a_clear_error(webui, args, fragment):
    status, body = webui.request("POST", "/sdapi/v1/txt2img", {**BASE, **SKIP_PREVIEWS,
                                 "alwayson_scripts": {"LCM-LoRA": {"args": args}}})
    assert status >= 400
    assert fragment in str(body)


def test_status_route_lists_the_variants(webui):
    status = webui.get("/lcm-lora/v1/status")
    by_variant = {entry["variant"]: entry for entry in status["variants"]}
    # The whole catalogue, each row with its family; LCM-LoRA's own are the three it always listed.
    assert {variant for variant, entry in by_variant.items() if entry["family"] == "lcm"} == {"sd15", "sdxl", "ssd1b"}
    assert {entry["family"] for entry in by_variant.values()} == {"lcm", "tcd", "hyper", "hyper-cfg", "lightning", "dmd2"}
    assert by_variant["sd15"]["installed"] is True


def test_positional_api_args_work(webui):
    result, probe = generate(webui, alwayson_scripts={"LCM-LoRA": {"args": [True, 2, 1.0, 0.5]}})
    assert probe["timesteps"] == [999, 499]
    assert f"<lora:{STEM}:0.5>" in infotext_prompt(result.infotext)


def test_disabled_changes_nothing_compared_with_no_extension(webui, webui_factory, tiny_webui_models):
    payload = {**BASE, **SKIP_PREVIEWS, "steps": 4}
    with_extension_off = webui.txt2img(**payload, alwayson_scripts={"LCM-LoRA": {"args": [{"enabled": False}]}})
    bare = webui_factory(extensions={}).client()
    without_extension = bare.txt2img(**payload)
    assert np.asarray(with_extension_off.image).tobytes() == np.asarray(without_extension.image).tobytes()
    strip_version = lambda text: re.sub(r", Version: .*$", "", text)  # noqa: E731
    assert strip_version(with_extension_off.infotext) == strip_version(without_extension.infotext)


def test_xyz_axis_lcm_steps_turns_lcm_on_per_cell(webui):
    axes = webui.get("/lcm-test/v1/xyz-axes")
    for label in ("LCM-LoRA weight", "LCM-LoRA steps", "LCM-LoRA mode", "LCM-LoRA TCD gamma"):
        assert axes.count(label) == 1
    values = {"x_type": axes.index("LCM-LoRA steps"), "x_values": "2, 4", **XYZ_ARGS}
    script_args = [values[name] for name in webui.get("/lcm-test/v1/xyz-run-params")]
    result, probe = generate(webui, script_name="x/y/z plot", script_args=script_args)
    assert probe["timesteps"] == [999, 499, 999, 759, 499, 259]
    assert sum("Sampler: LCM-LoRA," in text for text in result.infotexts) >= 2


def test_settings_section_is_registered(webui_ui, webui_installation):
    # The host registers extension settings while building the UI only (not with --nowebui).
    options = webui_ui.get("/sdapi/v1/options")
    if webui_installation.is_forge:
        # Forge's built-in ControlNet imports the API models while the scripts load, which freezes the
        # options response model before any extension's on_ui_settings: GET /sdapi/v1/options leaves out every
        # extension setting (ControlNet's own too). Read the registered settings through the test probe.
        assert "lcm_lora_steps" not in options, "Forge lists extension settings now: drop this branch"
        options = webui_ui.get("/lcm-test/v1/opts")
    assert options["lcm_lora_steps"] == 4 and options["lcm_lora_cfg_scale"] == 1.0
    assert options["lcm_lora_tcd_gamma"] == 0.3
