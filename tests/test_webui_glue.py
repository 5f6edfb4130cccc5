"""The WebUI glue against a thin fake host (tests/fake_webui.py): UNet-call counts, schedule, CFG-1 skip,
img2img strength semantics, sampler registration, the per-generation state. The real host runs these paths in
tests/e2e."""
import types

import pytest
import torch

from lib_lcm import sampling, schedules
from lib_lcm.params import LcmSettings
from lib_lcm.sampling import uncond_pass_is_redundant
from lib_lcm.schedules import img2img_plan
from tests.fake_webui import FakeP, MultiCond, fake_webui

BATCH = 2


def conds(weights_per_image=((1.0,),)):
    """Cond rows for a batch: image i gets one row per AND-weight."""
    conds_list, row = [], 0
    for weights in weights_per_image:
        conds_list.append([(row + k, w) for k, w in enumerate(weights)])
        row += len(weights)
    tensor = torch.linspace(-1, 1, row)[:, None, None].expand(row, 3, 8).contiguous()
    return MultiCond(conds_list, tensor), torch.zeros(len(weights_per_image), 3, 8)


def make_sampler(host, sampler_name):
    data = host.sd_samplers.all_samplers_map[sampler_name]
    sampler = data.constructor(host.sd_model)
    sampler.config = data
    return sampler


def run_img2img(host, p):
    sampler, (cond, uncond) = make_sampler(host, "LCM-LoRA"), conds()
    init = torch.randn(1, 4, 8, 8)
    return sampler.sample_img2img(p, init, torch.randn_like(init), cond, uncond)


def run_txt2img(host, sampler_name, p, cond, uncond, seed=0):
    sampler = make_sampler(host, sampler_name)
    torch.manual_seed(seed)
    x = torch.randn(len(cond.conds_list), 4, 8, 8)
    return sampler, sampler.sample(p, x, cond, uncond)


@pytest.fixture
def host():
    with fake_webui() as fake:
        from lib_lcm_webui import processing, samplers, state
        from lib_lcm_webui.compat import cfg_skip

        samplers.register_samplers()
        fake.samplers, fake.processing, fake.cfg_skip, fake.state = samplers, processing, cfg_skip, state
        yield fake


def test_cfg1_runs_one_unet_row_per_image_per_step_at_the_reference_timesteps(host):
    cond, uncond = conds(((1.0,),) * BATCH)
    p = FakeP(cfg_scale=1.0, steps=4)
    run_txt2img(host, "LCM-LoRA", p, cond, uncond)
    assert host.sd_model.calls == [(BATCH, t) for t in (999, 759, 499, 259)]
    assert "NGMS" not in p.extra_generation_params


def test_cfg_above_1_runs_cond_and_uncond_rows(host):
    cond, uncond = conds(((1.0,),) * BATCH)
    run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.5, steps=4), cond, uncond)
    assert host.sd_model.calls == [(2 * BATCH, t) for t in (999, 759, 499, 259)]


def test_cfg1_skip_gives_the_same_image_as_running_the_uncond_pass(host):
    cond, uncond = conds(((1.0,),) * BATCH)
    _, skipped = run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.0), cond, uncond, seed=3)
    assert {rows for rows, _ in host.sd_model.calls} == {BATCH}
    host.sd_model.calls.clear()
    # cfg_scale 1 + 1e-7 defeats the skip while guiding (numerically) the same.
    _, full = run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.0 + 1e-7), cond, uncond, seed=3)
    assert {rows for rows, _ in host.sd_model.calls} == {2 * BATCH}
    torch.testing.assert_close(skipped, full, rtol=0, atol=1e-5)


def test_glue_matches_lib_lcm_sampler_on_the_same_denoiser(host):
    cond, uncond = conds(((1.0,),))
    _, via_glue = run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.0, steps=4), cond, uncond, seed=5)

    from tests.fake_webui import CompVisDenoiser

    denoiser = CompVisDenoiser(host.sd_model, quantize=True)
    alphas_cumprod = host.samplers.alphas_cumprod_of(denoiser)
    model = sampling.LCMDenoiser(denoiser, alphas_cumprod)
    sigmas = schedules.lcm_sigmas(alphas_cumprod, 4).float()
    torch.manual_seed(5)
    x = torch.randn(1, 4, 8, 8) * (1 + sigmas[0] ** 2) ** 0.5
    direct = sampling.sample_lcm(lambda x, s: model(x, s, cond={"c_crossattn": [cond.tensor]}), x, sigmas,
                                 disable=True)
    torch.testing.assert_close(via_glue, direct, rtol=0, atol=1e-6)


def test_and_prompts_skip_only_when_weights_sum_to_one(host):
    halves, uncond = conds(((0.5, 0.5),))
    run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.0), halves, uncond)
    assert [rows for rows, _ in host.sd_model.calls] == [2] * 4  # two cond rows, no uncond row
    host.sd_model.calls.clear()
    heavy, uncond = conds(((0.7, 0.7),))
    run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.0), heavy, uncond)
    assert [rows for rows, _ in host.sd_model.calls] == [3] * 4  # uncond still needed


def test_a_users_own_ngms_setting_survives_the_skip(host):
    cond, uncond = conds()
    p = FakeP(cfg_scale=1.0)
    p.extra_generation_params["NGMS"] = 0.2
    run_txt2img(host, "LCM-LoRA", p, cond, uncond)
    assert p.extra_generation_params["NGMS"] == 0.2


def test_step_counter_stays_a_plain_int(host):
    cond, uncond = conds()
    sampler, _ = run_txt2img(host, "LCM-LoRA", FakeP(cfg_scale=1.0), cond, uncond)
    assert type(sampler.model_wrap_cfg.step) is int and sampler.model_wrap_cfg.step == 4


def test_img2img_runs_every_step_from_the_strengths_noise_level(host):
    run_img2img(host, FakeP(cfg_scale=1.0, steps=4, denoising_strength=0.75))
    assert [t for _, t in host.sd_model.calls] == schedules.lcm_timesteps(4, strength=0.75)
    assert len(host.sd_model.calls) == 4


def test_img2img_with_too_little_strength_for_the_steps_runs_fewer_and_says_so(host):
    p = FakeP(cfg_scale=1.0, steps=8, denoising_strength=0.1)
    run_img2img(host, p)
    assert len(host.sd_model.calls) == 5
    assert "allows at most 5" in p.extra_generation_params["LCM-LoRA warning"]


def test_img2img_step_warning_keeps_the_warnings_set_before_it(host):
    p = FakeP(cfg_scale=3.0, steps=8, denoising_strength=0.1)
    p.extra_generation_params["LCM-LoRA warning"] = "CFG 3 > 2 over-saturates LCM-LoRA images; use 1-2"
    run_img2img(host, p)
    assert p.extra_generation_params["LCM-LoRA warning"] == (
        "CFG 3 > 2 over-saturates LCM-LoRA images; use 1-2; "
        "denoising strength 0.1 allows at most 5 LCM steps; ran 5 instead of 8")


def test_tcd_sampler_runs_and_records_gamma(host):
    cond, uncond = conds()
    p = FakeP(cfg_scale=1.0, steps=4)
    host.state.update_generation_state(p, settings=LcmSettings(enabled=True, mode="TCD", gamma=0.5))
    _, out = run_txt2img(host, "LCM-LoRA TCD", p, cond, uncond)
    assert p.extra_generation_params["TCD gamma"] == 0.5
    assert [t for _, t in host.sd_model.calls] == schedules.tcd_timesteps(4)
    assert torch.isfinite(out).all()


def test_tcd_without_the_panel_uses_the_settings_pages_gamma():
    with fake_webui(opts={"lcm_lora_tcd_gamma": 0.7}) as fake:
        from lib_lcm_webui import samplers

        samplers.register_samplers()
        p = FakeP(cfg_scale=1.0, steps=4)
        cond, uncond = conds()
        run_txt2img(fake, "LCM-LoRA TCD", p, cond, uncond)
    assert p.extra_generation_params["TCD gamma"] == 0.7


def test_registration_is_idempotent_and_undone(host):
    host.samplers.register_samplers()
    names = [s.name for s in host.sd_samplers.all_samplers]
    assert names.count("LCM-LoRA") == 1 and names.count("LCM-LoRA TCD") == 1
    assert names[:2] == ["Euler a", "LCM"]  # the host's own entries are untouched
    host.samplers.unregister_samplers()
    assert [s.name for s in host.sd_samplers.all_samplers] == ["Euler a", "LCM"]
    assert set(host.sd_samplers.all_samplers_map) == {"Euler a", "LCM"}


def test_odd_step_only_changes_parity(host):
    step = host.cfg_skip._OddStep(4)
    assert step % 2 == 1 and step == 4 and step / 2 == 2
    assert type(step + 1) is int and step + 1 == 5


@pytest.mark.parametrize("saved", [{}, {"batch_cond_uncond": True}])
def test_skipped_uncond_pass_runs_unbatched_so_row_pickers_see_only_cond_rows(host, monkeypatch, saved):
    """AnimateDiff's context windows index rows i and i + frames while batch_cond_uncond is on (sd-webui-animatediff
    infv2v); during our skipped call it is off, and afterwards as it was (unset stays unset)."""
    opts = host.cfg_skip.shared.opts
    monkeypatch.setattr(opts, "data_labels", {"batch_cond_uncond": object()}, raising=False)
    monkeypatch.setattr(opts, "data", dict(saved), raising=False)
    denoiser = types.SimpleNamespace(p=FakeP(), step=0)
    with host.cfg_skip.uncond_pass_skipped(denoiser):
        assert opts.data["batch_cond_uncond"] is False
    assert opts.data == saved


@pytest.mark.parametrize("scale, weights, expected", [
    (1.0, [[(0, 1.0)]], True),
    (1.5, [[(0, 1.0)]], False),
    (1.0, [[(0, 0.5), (1, 0.5)]], True),
    (1.0, [[(0, 0.7), (1, 0.7)]], False),
    (1.0, [[(0, 1.0)], [(1, 0.9)]], False),
])
def test_uncond_pass_is_redundant(scale, weights, expected):
    assert uncond_pass_is_redundant(weights, scale) is expected


def test_img2img_plan():
    assert img2img_plan(4, 0.75) == (4, 0.75, None)
    steps, _, warning = img2img_plan(8, 0.1)
    assert steps == 5 and "at most 5" in warning
    with pytest.raises(ValueError, match="strength >= 0.02"):
        img2img_plan(4, 0.01)


def test_bad_script_args_abort_the_generation_before_any_unet_call(host):
    p = FakeP(cfg_scale=7.0, steps=20, sampler_name="Euler a")
    host.processing.before_process(p, [{"enabled": True, "steps": 0}])
    assert p.sampler_name == "LCM-LoRA"
    cond, uncond = conds()
    with pytest.raises(Exception, match="'steps' = 0 is outside 1..16"):
        run_txt2img(host, "LCM-LoRA", p, cond, uncond)
    assert host.sd_model.calls == []


def test_disabled_script_changes_nothing_on_p(host):
    p = FakeP(cfg_scale=7.0, steps=20, sampler_name="Euler a", prompt="a cat", all_prompts=["a cat"])
    before = dict(vars(p))
    host.processing.before_process(p, [False, 4, 1.0, 1.0, "LCM", 0.3])
    host.processing.process(p, host.sd_model)
    after = {k: v for k, v in vars(p).items() if k != host.state.ATTRIBUTE}
    assert after == before
    assert vars(p)[host.state.ATTRIBUTE].settings == LcmSettings()  # the one object the extension adds


def test_unsupported_architecture_fails_the_generation_with_a_message_naming_the_fix(host, tmp_path):
    sd2 = types.SimpleNamespace(is_sd2=True, sd_checkpoint_info=types.SimpleNamespace(
        filename=str(tmp_path / "v2-1_768-ema-pruned.ckpt"), name_for_extra="v2-1_768-ema-pruned"))
    p = FakeP(cfg_scale=7.0, steps=20, sampler_name="Euler a", prompt="a cat", all_prompts=["a cat"])
    host.processing.before_process(p, [{"enabled": True}])
    host.processing.process(p, sd2)
    error = host.state.generation_state(p).error
    assert "'v2-1_768-ema-pruned' is SD 2.x" in error
    assert "Load one of those, or turn LCM-LoRA off" in error
    assert p.all_prompts == ["a cat"]  # nothing tagged
    cond, uncond = conds()
    with pytest.raises(Exception, match="is SD 2.x"):
        run_txt2img(host, "LCM-LoRA", p, cond, uncond)
    assert host.sd_model.calls == []


def test_xyz_axis_values_stay_with_their_cell(host):
    """The X/Y/Z script shallow-copies `p` per cell: one cell's axis value must not reach another."""
    import copy

    from lib_lcm_webui import xyz

    base = FakeP()
    cell_a, cell_b = copy.copy(base), copy.copy(base)
    xyz._setter("steps")(cell_a, 6, None)
    xyz._setter("weight")(cell_b, 0.5, None)
    assert host.state.generation_state(cell_a).overrides == {"steps": 6, "enabled": True}
    assert host.state.generation_state(cell_b).overrides == {"weight": 0.5, "enabled": True}
    assert host.state.generation_state(base).overrides == {}
    host.processing.before_process(cell_a, [])
    assert cell_a.steps == 6 and cell_a.sampler_name == "LCM-LoRA"


def test_a_custom_registry_stem_tags_the_prompt_and_resolves_the_alias(host, tmp_path, monkeypatch):
    import json

    from lib_lcm.weights import registry

    shipped = json.loads(registry.default_registry_path().read_text(encoding="utf-8"))
    shipped["variants"]["sd15"]["stem"] = "my-lcm-sd15"
    custom = tmp_path / "registry.json"
    custom.write_text(json.dumps(shipped), encoding="utf-8")
    monkeypatch.setenv(registry.REGISTRY_ENV, str(custom))
    info = types.SimpleNamespace(filename=str(tmp_path / "model.ckpt"), name_for_extra="model")
    model = types.SimpleNamespace(sd_checkpoint_info=info, is_sd1=True)
    p = FakeP(prompt="a cat <lora:lcm:0.5>", all_prompts=["a cat <lora:lcm:0.5>"])
    host.processing.before_process(p, [])
    host.processing.process(p, model)
    assert p.all_prompts == ["a cat <lora:my-lcm-sd15:0.5>"]


@pytest.mark.parametrize("class_name", ["Script", "XYZ"])  # A1111 and Forge / Forge Classic's built-in xyz extension
def test_xyz_axes_reach_the_script_instances_that_exist_already(host, class_name):
    """API-only starts build the X/Y/Z script's axis list before our axes are registered: they are appended."""
    from modules import scripts

    from lib_lcm_webui import xyz

    class AxisOption:
        def __init__(self, label, kind, apply, choices=None):
            self.label, self.choices = label, choices

    script_class = type(class_name, (), {})
    module = types.SimpleNamespace(AxisOption=AxisOption, axis_options=[AxisOption("Seed", int, None)])
    instance = script_class()
    instance.current_axis_options = list(module.axis_options)
    scripts.scripts_data[:] = [types.SimpleNamespace(
        script_class=script_class, path="/webui/extensions-builtin/xyz/scripts/xyz_grid.py", module=module)]
    scripts.scripts_txt2img = types.SimpleNamespace(scripts=[instance])
    try:
        assert xyz.register_axes() is True
        assert xyz.register_axes() is True  # Reload UI: no axis twice
        labels = [axis.label for axis in instance.current_axis_options]
        assert labels == ["Seed", *xyz.AXIS_LABELS]
        assert [axis.label for axis in module.axis_options] == labels
    finally:
        scripts.scripts_data[:] = []
        del scripts.scripts_txt2img
