"""The sampler glue on Forge (lllyasviel/stable-diffusion-webui-forge 2.x) against a thin fake of the Forge pieces
it touches, on top of tests/fake_webui.py. Written from Forge dfdcbab6:
- `CFGDenoiser.forward` never calls a k-diffusion wrapper: it calls `backend.sampling.sampling_function`, which
  takes the UNet patcher from `self.inner_model.inner_model.forge_objects.unet`, drops the uncond rows at CFG 1
  (unless `model_options["disable_cfg1_optimization"]`), batches cond+uncond rows in one UNet call, and runs the
  patcher's `sampler_post_cfg_function`s on the CFG result; in the hires pass the CFG scale is `p.hr_cfg`;
- `CFGDenoiserKDiffusion.inner_model` is a `ForgeScheduleLinker(predictor)` (the sigma table) whose `.inner_model`
  is the sd_model; the sd_model has no `alphas_cumprod` / `apply_model`;
- samplers bracket sampling with `sampling_prepare(unet, x)` / `sampling_cleanup(unet)` (they load the UNet and
  apply the LoRA patches: a UNet call on a patcher that was not prepared would run without the LoRA).
The Forges built on `ldm_patched` (reForge, Forge Classic) keep `sampling_prepare`/`sampling_cleanup` in
`modules_forge.forge_sampler` and have no `backend` package; every test here runs on both layouts.
The real Forge runs these paths in tests/e2e (host switch: LCM_E2E_FORGE_MODELS in tests/e2e/conftest.py).
"""
from __future__ import annotations

import copy
import math
import sys
import types
from contextlib import contextmanager

import pytest
import torch

from lib_lcm import sampling, schedules
from lib_lcm.params import LcmSettings
from lib_lcm.schedules import scaled_linear_alphas_cumprod
from tests.fake_webui import CFGDenoiser as A1111CFGDenoiser
from tests.fake_webui import FakeP, MultiCond, fake_webui, installed_modules

BATCH = 2
REFERENCE_TIMESTEPS = [999, 759, 499, 259]  # diffusers' LCMScheduler, 4 steps


class Predictor:
    def __init__(self):
        alphas_cumprod = scaled_linear_alphas_cumprod().float()
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5

    def timestep(self, sigma):
        return (sigma.log()[:, None] - self.sigmas.log()[None, :]).abs().argmin(dim=1)


class KModel:
    """Forge's KModel: `apply_model(x, sigma, c_crossattn=...)` returns x_0; records (rows, timestep, prepared)."""

    def __init__(self):
        self.predictor = Predictor()
        self.calls = []
        self.prepared = None  # the patcher sampling_prepare loaded last, None after cleanup
        self.fail = False

    def apply_model(self, x, sigma, patcher, c_crossattn):
        t = self.predictor.timestep(sigma)
        self.calls.append((x.shape[0], int(t[0]), self.prepared is patcher))
        if self.fail:
            raise RuntimeError("interrupted")
        x_in = x / (sigma[:, None, None, None] ** 2 + 1) ** 0.5
        eps = torch.tanh(0.3 * x_in + t[:, None, None, None] / 1000.0) + c_crossattn[:, 0, 0][:, None, None, None] * 0.1
        return x - eps * sigma[:, None, None, None]


class UnetPatcher:
    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}

    def clone(self):
        clone = UnetPatcher(self.model)
        clone.model_options = copy.deepcopy(self.model_options)
        return clone

    def set_model_sampler_post_cfg_function(self, post_cfg_function, disable_cfg1_optimization=False):
        self.model_options["sampler_post_cfg_function"] = [
            *self.model_options.get("sampler_post_cfg_function", []), post_cfg_function]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True


class ForgeSdModel:
    """Forge's diffusion engine: everything the sampler needs is on `forge_objects`."""

    def __init__(self):
        self.forge_objects = types.SimpleNamespace(unet=UnetPatcher(KModel()))


class ForgeScheduleLinker(torch.nn.Module):
    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    @property
    def sigmas(self):
        return self.predictor.sigmas


FORGE2 = "backend.sampling.sampling_function"  # Forge 2.x
LDM_PATCHED = "modules_forge.forge_sampler"  # reForge, Forge Classic


def make_sampling_function_module(events, name=FORGE2):
    module = types.ModuleType(name)

    def sampling_prepare(unet, x):
        events.append(("prepare", unet))
        unet.model.prepared = unet

    def sampling_cleanup(unet):
        events.append(("cleanup", unet))
        unet.model.prepared = None

    def sampling_function(self, denoiser_params, cond_scale, cond_composition):
        unet = self.inner_model.inner_model.forge_objects.unet
        options = unet.model_options
        x, sigma = denoiser_params.x, denoiser_params.sigma
        uncond = denoiser_params.text_uncond
        if math.isclose(cond_scale, 1.0) and not options.get("disable_cfg1_optimization", False):
            uncond = None
        rows = [conds[0][0] for conds in cond_composition]
        tensor = denoiser_params.text_cond if uncond is None else torch.cat([denoiser_params.text_cond, uncond])
        x_in = torch.cat([x[rows]] if uncond is None else [x[rows], x])
        sigma_in = torch.cat([sigma[rows]] if uncond is None else [sigma[rows], sigma])
        out = unet.model.apply_model(x_in, sigma_in, unet, c_crossattn=tensor)
        cond_pred = out[: len(rows)]
        uncond_pred = torch.zeros_like(cond_pred) if uncond is None else out[len(rows):]
        denoised = uncond_pred + (cond_pred - uncond_pred) * cond_scale
        for fn in options.get("sampler_post_cfg_function", []):
            denoised = fn({"denoised": denoised, "input": x, "sigma": sigma, "cond_denoised": cond_pred,
                           "uncond_denoised": uncond_pred, "model_options": options})
        events.append(("unet", unet, len(options.get("sampler_post_cfg_function", []))))
        return denoised, cond_pred, uncond_pred

    module.sampling_prepare = sampling_prepare
    module.sampling_cleanup = sampling_cleanup
    module.sampling_function = sampling_function
    return module


def make_cfg_denoiser(sampling_function_module):
    class CFGDenoiser(A1111CFGDenoiser):
        """A1111's fake with Forge's forward: the UNet runs through Forge's sampling function."""

        @property
        def inner_model(self):
            raise NotImplementedError()

        def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
            if self.p.is_hr_pass:
                cond_scale = self.p.hr_cfg
            params = types.SimpleNamespace(x=x, sigma=sigma, text_cond=cond.tensor, text_uncond=uncond,
                                           image_cond=image_cond)
            denoised, _, _ = sampling_function_module.sampling_function(
                self, denoiser_params=params, cond_scale=cond_scale, cond_composition=cond.conds_list)
            self.step += 1
            return denoised

    class CFGDenoiserKDiffusion(CFGDenoiser):
        @property
        def inner_model(self):
            if self.model_wrap is None:
                shared = sys.modules["modules.shared"]
                self.model_wrap = ForgeScheduleLinker(shared.sd_model.forge_objects.unet.model.predictor)
                self.model_wrap.inner_model = shared.sd_model
            return self.model_wrap

    return CFGDenoiser, CFGDenoiserKDiffusion


@contextmanager
def fake_forge(layout=FORGE2):
    """The A1111 fake with Forge's modules and CFG denoiser in place, everything restored afterwards;
    `layout`: where the sampling module lives (FORGE2 or LDM_PATCHED)."""
    events = []
    with fake_webui(sd_model=ForgeSdModel()) as host:
        sampling_function = make_sampling_function_module(events, layout)
        cfg_denoiser, cfg_denoiser_kdiffusion = make_cfg_denoiser(sampling_function)
        sys.modules["modules.sd_samplers_cfg_denoiser"].CFGDenoiser = cfg_denoiser
        sys.modules["modules.sd_samplers_kdiffusion"].CFGDenoiserKDiffusion = cfg_denoiser_kdiffusion
        backend = types.ModuleType("backend")
        backend.__path__ = []
        backend_sampling = types.ModuleType("backend.sampling")
        backend_sampling.__path__ = []
        backend.sampling, backend_sampling.sampling_function = backend_sampling, sampling_function
        modules_forge = types.ModuleType("modules_forge")
        modules_forge.__path__ = []
        forge_version = types.ModuleType("modules_forge.forge_version")
        forge_version.version = "2.0.1v1.10.1"
        modules_forge.forge_version = forge_version
        installed = {"modules_forge": modules_forge, "modules_forge.forge_version": forge_version}
        if layout == FORGE2:
            installed.update({"backend": backend, "backend.sampling": backend_sampling, FORGE2: sampling_function})
        else:
            modules_forge.forge_sampler = installed[LDM_PATCHED] = sampling_function
        with installed_modules(installed):
            from lib_lcm_webui import processing, samplers
            from lib_lcm_webui.compat import forge as compat_forge

            samplers.register_samplers()
            host.compat_forge, host.processing, host.samplers = compat_forge, processing, samplers
            host.events = events
            host.sampling_module = sampling_function
            host.unet = host.sd_model.forge_objects.unet
            yield host


@pytest.fixture(params=[FORGE2, LDM_PATCHED])
def forge(request):
    with fake_forge(request.param) as host:
        yield host


def conds(batch=BATCH):
    tensor = torch.linspace(-1, 1, batch)[:, None, None].expand(batch, 3, 8).contiguous()
    return MultiCond([[(i, 1.0)] for i in range(batch)], tensor), torch.zeros(batch, 3, 8)


def forge_p(**kwargs):
    return FakeP(**{"is_hr_pass": False, "hr_cfg": 1.0, **kwargs})


def make_sampler(host, name):
    data = host.sd_samplers.all_samplers_map[name]
    sampler = data.constructor(host.sd_model)
    sampler.config = data
    return sampler


def run_txt2img(host, name, p, seed=0, batch=BATCH):
    cond, uncond = conds(batch)
    # Forge computes no negative conditioning at CFG 1 (processing.py: `self.uc = None`).
    uncond = None if p.cfg_scale == 1 and not p.is_hr_pass else uncond
    torch.manual_seed(seed)
    x = torch.randn(batch, 4, 8, 8)
    return make_sampler(host, name).sample(p, x, cond, uncond)


def unet_calls(host):
    return host.unet.model.calls


def test_forge_is_detected_only_with_its_modules(forge):
    assert forge.compat_forge.forge_sampling() is sys.modules[forge.sampling_module.__name__]
    assert forge.samplers.FORGE is forge.compat_forge.forge_sampling()


def test_a1111_is_not_taken_for_forge():
    with fake_webui():
        from lib_lcm_webui import samplers
        from lib_lcm_webui.compat import forge

        assert forge.forge_sampling() is None and samplers.FORGE is None


def test_cfg1_runs_forges_denoiser_once_per_step_at_the_reference_timesteps(forge):
    run_txt2img(forge, "LCM-LoRA", forge_p(cfg_scale=1.0))
    assert unet_calls(forge) == [(BATCH, t, True) for t in REFERENCE_TIMESTEPS]


def test_cfg_above_1_batches_cond_and_uncond_rows(forge):
    run_txt2img(forge, "LCM-LoRA", forge_p(cfg_scale=1.5))
    assert unet_calls(forge) == [(2 * BATCH, t, True) for t in REFERENCE_TIMESTEPS]


def test_sampling_is_bracketed_by_prepare_and_cleanup_of_the_patcher_it_runs(forge):
    run_txt2img(forge, "LCM-LoRA", forge_p())
    kinds = [event[0] for event in forge.events]
    assert kinds == ["prepare", "unet", "unet", "unet", "unet", "cleanup"]
    used = {event[1] for event in forge.events}
    assert len(used) == 1 and used != {forge.unet}  # a clone: the boundary condition stays off the pass' patcher


def test_the_pass_patcher_is_restored_and_left_unchanged(forge):
    options = copy.deepcopy(forge.unet.model_options)
    run_txt2img(forge, "LCM-LoRA", forge_p())
    assert forge.sd_model.forge_objects.unet is forge.unet
    assert forge.unet.model_options == options


def test_repeated_generations_install_the_boundary_condition_once(forge):
    for _ in range(3):
        run_txt2img(forge, "LCM-LoRA", forge_p())
    assert {event[2] for event in forge.events if event[0] == "unet"} == {1}


def test_a_failing_generation_still_cleans_up_and_restores_the_patcher(forge):
    forge.unet.model.fail = True
    with pytest.raises(RuntimeError, match="interrupted"):
        run_txt2img(forge, "LCM-LoRA", forge_p())
    assert [event[0] for event in forge.events] == ["prepare", "cleanup"]
    assert forge.sd_model.forge_objects.unet is forge.unet
    assert forge.unet.model.prepared is None


def test_the_post_cfg_function_is_lcms_boundary_condition(forge):
    run_txt2img(forge, "LCM-LoRA", forge_p())
    clone = forge.events[0][1]
    (post_cfg,) = clone.model_options["sampler_post_cfg_function"]
    predictor = forge.unet.model.predictor
    x, denoised = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    for timestep in (0, 1, 3):
        sigma = predictor.sigmas[timestep].reshape(1)
        c_skip, c_out = sampling.boundary_condition_scalings(torch.tensor(float(timestep)))
        expected = c_out * denoised + c_skip * x / (1 + sigma**2) ** 0.5
        out = post_cfg({"denoised": denoised, "input": x, "sigma": sigma})
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # t = 0: the boundary condition returns the sample itself, whatever the model predicted.
    sigma = predictor.sigmas[0].reshape(1)
    torch.testing.assert_close(post_cfg({"denoised": denoised, "input": x, "sigma": sigma}),
                               x / (1 + sigma**2) ** 0.5)


def test_glue_matches_lib_lcm_sampler_on_the_same_model(forge):
    via_glue = run_txt2img(forge, "LCM-LoRA", forge_p(), seed=5, batch=1)
    cond, _ = conds(1)
    model = forge.unet.model
    alphas_cumprod = 1.0 / (1.0 + model.predictor.sigmas.double() ** 2)
    denoiser = sampling.LCMDenoiser(
        lambda x, sigma: model.apply_model(x, sigma, model.prepared, c_crossattn=cond.tensor), alphas_cumprod)
    sigmas = schedules.lcm_sigmas(alphas_cumprod, 4).float()
    torch.manual_seed(5)
    x = torch.randn(1, 4, 8, 8) * (1 + sigmas[0] ** 2) ** 0.5
    direct = sampling.sample_lcm(denoiser, x, sigmas, disable=True)
    torch.testing.assert_close(via_glue, direct, rtol=0, atol=1e-6)


def test_tcd_runs_without_boundary_condition_on_the_pass_patcher(forge):
    p = forge_p()
    out = run_txt2img(forge, "LCM-LoRA TCD", p)
    assert [t for _, t, _ in unet_calls(forge)] == schedules.tcd_timesteps(4)
    assert all(prepared for _, _, prepared in unet_calls(forge))
    assert {event[1] for event in forge.events} == {forge.unet}
    assert "sampler_post_cfg_function" not in forge.unet.model_options
    assert p.extra_generation_params["TCD gamma"] == 0.3
    assert torch.isfinite(out).all()


def test_img2img_runs_every_step_from_the_strengths_noise_level(forge):
    cond, uncond = conds(1)
    init = torch.randn(1, 4, 8, 8)
    make_sampler(forge, "LCM-LoRA").sample_img2img(
        forge_p(steps=4, denoising_strength=0.75), init, torch.randn_like(init), cond, None)
    assert unet_calls(forge) == [(1, t, True) for t in schedules.lcm_timesteps(4, strength=0.75)]


def test_hires_pass_runs_at_the_lcm_cfg(forge):
    p = forge_p(cfg_scale=1.5, enable_hr=True, hr_cfg=1.0)
    forge.processing.apply_settings(p, LcmSettings(enabled=True, cfg_scale=1.5))
    assert p.hr_cfg == 1.5
    p.is_hr_pass = True
    run_txt2img(forge, "LCM-LoRA", p)
    assert [rows for rows, _, _ in unet_calls(forge)] == [2 * BATCH] * 4


def test_a1111_processing_gets_no_hires_cfg_field():
    p = FakeP(cfg_scale=1.0, enable_hr=True)
    with fake_webui():
        from lib_lcm_webui import processing

        processing.apply_settings(p, LcmSettings(enabled=True, cfg_scale=1.5))
    assert not hasattr(p, "hr_cfg") and p.hr_sampler_name == "LCM-LoRA"
