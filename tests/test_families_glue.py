"""The few-step families in the WebUI glue, against the thin fake host: each recipe's sampler (timesteps the UNet
sees, one row per image per step at CFG 1, img2img tails), and what a family does to a generation (file, tag,
sampler, infotext, no-file message, step guard rail, the user's own copy recognised by its sha256)."""
import types

import pytest
import torch

from lib_lcm.families import FAMILIES_BY_KEY, FAMILY_KEYS
from lib_lcm.params import LcmSettings
from lib_lcm.schedules import trailing_timesteps
from tests import test_webui_glue
from tests.fake_webui import FakeP
from tests.test_webui_glue import BATCH, conds, make_sampler, run_txt2img

host = test_webui_glue.host  # the fake host with our samplers registered (fixture)

HYPER_SDXL_8 = "ca689190e8c46038550384b5675488526cfe5a40d35f82b27acb75c100f417c1"
DMD2_FIRST_UPLOAD = "7de75d21cb3f04bc3e734424157b2c3b799b862069c8dd9f4ad76fe66c57ba7c"


def timesteps_seen(host):
    return [t for _, t in host.sd_model.calls]


@pytest.mark.parametrize(("sampler_name", "steps"), [
    ("LCM-LoRA DDIM trailing", 4), ("LCM-LoRA DDIM trailing", 12), ("LCM-LoRA Euler trailing", 2),
    ("LCM-LoRA Euler trailing", 8), ("LCM-LoRA LCM trailing", 4),
])
def test_each_recipe_sampler_runs_its_trailing_timesteps_one_row_per_image_at_cfg1(host, sampler_name, steps):
    cond, uncond = conds(((1.0,),) * BATCH)
    _, out = run_txt2img(host, sampler_name, FakeP(cfg_scale=1.0, steps=steps), cond, uncond)
    assert host.sd_model.calls == [(BATCH, t) for t in trailing_timesteps(steps)]
    assert torch.isfinite(out).all()


def test_dmd2s_sampler_sees_the_cards_timestep_list(host):
    cond, uncond = conds()
    run_txt2img(host, "LCM-LoRA LCM trailing", FakeP(cfg_scale=1.0, steps=4), cond, uncond)
    assert timesteps_seen(host) == [999, 749, 499, 249]


def test_hyper_cfg_runs_cond_and_uncond_rows_at_cfg5(host):
    cond, uncond = conds(((1.0,),) * BATCH)
    run_txt2img(host, "LCM-LoRA DDIM trailing", FakeP(cfg_scale=5.0, steps=8), cond, uncond)
    assert host.sd_model.calls == [(2 * BATCH, t) for t in trailing_timesteps(8)]


@pytest.mark.parametrize(("sampler_name", "steps", "strength", "expected"), [
    ("LCM-LoRA DDIM trailing", 4, 0.5, [499, 249]),
    ("LCM-LoRA Euler trailing", 4, 0.75, [749, 499, 249]),
    ("LCM-LoRA LCM trailing", 4, 0.3, [249]),
])
def test_trailing_img2img_runs_the_tail_the_file_was_distilled_on(host, sampler_name, steps, strength, expected):
    sampler, (cond, uncond) = make_sampler(host, sampler_name), conds()
    init = torch.randn(1, 4, 8, 8)
    sampler.sample_img2img(FakeP(cfg_scale=1.0, steps=steps, denoising_strength=strength), init,
                           torch.randn_like(init), cond, uncond)
    assert timesteps_seen(host) == expected


def test_trailing_img2img_below_one_step_aborts_naming_the_strength(host):
    sampler, (cond, uncond) = make_sampler(host, "LCM-LoRA Euler trailing"), conds()
    init = torch.randn(1, 4, 8, 8)
    with pytest.raises(Exception, match="raise the denoising strength to at least 0.25"):
        sampler.sample_img2img(FakeP(cfg_scale=1.0, steps=4, denoising_strength=0.2), init,
                               torch.randn_like(init), cond, uncond)
    assert host.sd_model.calls == []


def test_hyper_unified_file_runs_tcd_at_its_cards_eta_1(host):
    cond, uncond = conds()
    p = FakeP(cfg_scale=1.0, steps=2)
    host.state.update_generation_state(p, settings=LcmSettings(enabled=True, family="hyper", gamma=0.3),
                                       recipe="tcd-eta1")
    run_txt2img(host, "LCM-LoRA TCD", p, cond, uncond)
    assert p.extra_generation_params["TCD gamma"] == 1.0


def checkpoint(tmp_path, **flags):
    info = types.SimpleNamespace(filename=str(tmp_path / "model.ckpt"), name_for_extra="my-model")
    return types.SimpleNamespace(sd_checkpoint_info=info, **flags)


@pytest.fixture
def fetched(host, monkeypatch):
    """ensure_weights recorded instead of downloading; the host's LoRA hashes looked up in `hashes`."""
    from lib_lcm.weights import download
    from lib_lcm_webui.compat import lora_loader

    calls, hashes = [], {}
    monkeypatch.setattr(download, "ensure_weights", lambda variant, *a, **k: calls.append(variant) or variant)
    monkeypatch.setattr(lora_loader, "lora_file_sha256", lambda name: hashes.get(name))
    return types.SimpleNamespace(calls=calls, hashes=hashes)


def generate(host, model, args, prompt="a cat"):
    p = FakeP(cfg_scale=7.0, steps=20, sampler_name="Euler a", prompt=prompt, all_prompts=[prompt])
    host.processing.before_process(p, args)
    host.processing.process(p, model)
    return p


def test_lightning_on_sdxl_uses_its_file_tag_sampler_and_infotext(host, tmp_path, fetched):
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "lightning"}])
    assert host.state.generation_state(p).error is None
    assert fetched.calls == ["lightning-sdxl-4step"]
    assert p.all_prompts == ["a cat <lora:sdxl_lightning_4step_lora:1>"]
    assert (p.sampler_name, p.steps, p.cfg_scale) == ("LCM-LoRA Euler trailing", 4, 1.0)
    params = p.extra_generation_params
    assert params["LCM-LoRA"] == "sdxl_lightning_4step_lora" and params["LCM-LoRA family"] == "lightning"
    assert "LCM-LoRA mode" not in params and "LCM-LoRA warning" not in params


def test_lcm_lora_callers_get_todays_infotext(host, tmp_path, fetched):
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True}])
    params = p.extra_generation_params
    assert params["LCM-LoRA"] == "lcm-lora-sdxl" and params["LCM-LoRA mode"] == "LCM"
    assert "LCM-LoRA family" not in params and p.sampler_name == "LCM-LoRA"


@pytest.mark.parametrize("family", ["lightning", "dmd2"])
def test_an_sdxl_only_family_on_sd15_says_so(host, tmp_path, fetched, family):
    p = generate(host, checkpoint(tmp_path, is_sd1=True), [{"enabled": True, "family": family}])
    error = host.state.generation_state(p).error
    assert "'my-model' is SD 1.x" in error and "has no file for SD 1.x checkpoints" in error
    assert "pick another family" in error and fetched.calls == [] and p.all_prompts == ["a cat"]


def test_a_step_count_off_the_files_distillation_runs_with_a_warning(host, tmp_path, fetched):
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "lightning", "steps": 6}])
    assert fetched.calls == ["lightning-sdxl-4step"] and p.steps == 6
    assert "sdxl_lightning_4step_lora was distilled for 4 steps; 6 steps" in p.extra_generation_params["LCM-LoRA warning"]


def test_hyper_picks_its_file_by_step_count(host, tmp_path, fetched):
    p = generate(host, checkpoint(tmp_path, is_sd1=True), [{"enabled": True, "family": "hyper", "steps": 1}])
    assert fetched.calls == ["hyper-sd15-1step"] and p.sampler_name == "LCM-LoRA TCD"
    assert host.state.generation_state(p).recipe == "tcd-eta1"
    p = generate(host, checkpoint(tmp_path, is_sd1=True), [{"enabled": True, "family": "hyper", "steps": 8}])
    assert fetched.calls[-1] == "hyper-sd15-8step" and p.sampler_name == "LCM-LoRA DDIM trailing"


def test_hyper_cfg_brings_its_guidance(host, tmp_path, fetched):
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "hyper-cfg"}])
    assert (p.steps, p.cfg_scale, p.sampler_name) == (8, 5.0, "LCM-LoRA DDIM trailing")
    assert fetched.calls == ["hyper-sdxl-8step-cfg"] and "LCM-LoRA warning" not in p.extra_generation_params


def test_the_users_own_copy_is_recognised_by_sha256_and_used(host, tmp_path, fetched):
    fetched.hashes["hyper8"] = HYPER_SDXL_8
    prompt = "a cat <lora:hyper8:0.9>"
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "hyper", "steps": 8}], prompt)
    assert fetched.calls == [] and p.all_prompts == [prompt]  # no download, no second tag
    assert p.extra_generation_params["LCM-LoRA"] == "hyper8" and p.sampler_name == "LCM-LoRA DDIM trailing"
    # At 4 steps the user's 8-step file still wins over downloading the 4-step one: its recipe, with the guard rail.
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "hyper", "steps": 4}], prompt)
    assert fetched.calls == [] and "Hyper-SDXL-8steps-lora was distilled for 8 steps" in (
        p.extra_generation_params["LCM-LoRA warning"])
    # The panel's page logic may have tagged the catalogue's copy as well: only the user's stays.
    tagged = f"{prompt} <lora:Hyper-SDXL-8steps-lora:1>"
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "hyper", "steps": 8}], tagged)
    assert p.all_prompts == [prompt] and fetched.calls == []


def test_other_families_and_obsolete_uploads_in_the_prompt_are_named(host, tmp_path, fetched):
    fetched.hashes.update({"hyper8": HYPER_SDXL_8, "old-dmd2": DMD2_FIRST_UPLOAD})
    prompt = "a cat <lora:hyper8:1> <lora:old-dmd2:1>"
    p = generate(host, checkpoint(tmp_path, is_sdxl=True), [{"enabled": True, "family": "lightning"}], prompt)
    warning = p.extra_generation_params["LCM-LoRA warning"]
    assert "<lora:hyper8> is Hyper-SDXL-8steps-lora, a hyper file: pick that family" in warning
    assert "<lora:old-dmd2>: this is an earlier upload of dmd2_sdxl_4step_lora_fp16" in warning
    assert "re-download" in warning and fetched.calls == ["lightning-sdxl-4step"]


def test_a_family_axis_brings_the_familys_defaults(host, tmp_path, fetched):
    from lib_lcm_webui import xyz

    p = FakeP(cfg_scale=7.0, steps=20, prompt="a cat", all_prompts=["a cat"])
    xyz._setter("family")(p, "Hyper-SD CFG", None)
    host.processing.before_process(p, [{"enabled": True, "steps": 6, "cfg_scale": 1.5}])
    hyper_cfg = FAMILIES_BY_KEY["hyper-cfg"]
    assert (p.steps, p.cfg_scale) == (hyper_cfg.steps, hyper_cfg.cfg_scale)


def test_every_family_is_an_axis_choice_and_the_samplers_are_registered(host):
    from lib_lcm.params import PARAMS_BY_KEY, SAMPLER_NAMES
    from lib_lcm_webui import xyz

    assert ("family", "LCM-LoRA family") in xyz.AXES
    assert set(SAMPLER_NAMES) <= set(host.sd_samplers.all_samplers_map)
    assert len(PARAMS_BY_KEY["family"].labels) == len(FAMILY_KEYS)


def test_a_prompt_loras_file_sha256_comes_from_the_hosts_hash_cache(host, tmp_path, monkeypatch):
    """The whole file's sha256 (not the host's addnet `Lora hashes`), for a name the host's Lora list knows."""
    import hashlib
    import sys

    from lib_lcm_webui.compat import lora_loader

    path = tmp_path / "hyper8.safetensors"
    path.write_bytes(b"not really a LoRA")
    networks = types.SimpleNamespace(available_network_aliases={"hyper8": types.SimpleNamespace(
        filename=str(path), name="hyper8")})
    monkeypatch.setitem(sys.modules, "networks", networks)
    assert lora_loader.lora_file_sha256("hyper8") == hashlib.sha256(b"not really a LoRA").hexdigest()
    assert lora_loader.lora_file_sha256("unknown") is None
    monkeypatch.setitem(sys.modules, "networks", None)
    assert lora_loader.lora_file_sha256("hyper8") is None
