"""The "LCM-LoRA" and "LCM-LoRA TCD" samplers, declared like the host's own (`modules/sd_samplers_lcm.py`).

What the host's built-in "LCM" (1.8+) does differently:
- its default schedule is not the reference one (4 steps: t 999/679/339/19 vs diffusers 999/759/499/259);
- it runs the negative-prompt UNet pass at CFG 1, which cannot change the result;
- img2img cuts the step count instead of starting the full count at the strength's noise level.
On Forge the host's CFG denoiser drives the UNet (see `compat.forge`); our samplers only add LCM's boundary condition
to it and load the UNet the way Forge's own samplers do.
"""
from __future__ import annotations

import contextlib

import k_diffusion.external
import k_diffusion.sampling
import torch
from modules import prompt_parser, sd_samplers, sd_samplers_common, sd_samplers_kdiffusion, shared

from lib_lcm import sampling, schedules
from lib_lcm.params import DEFAULTS, PARAMS_BY_KEY, SAMPLER_LCM, SAMPLER_NAMES, SAMPLER_TCD
from lib_lcm.sampling import uncond_pass_is_redundant
from lib_lcm.schedules import img2img_plan
from lib_lcm_webui.compat import cfg_skip, forge, sampler_api
from lib_lcm_webui.state import abort_generation, add_infotext_warning, generation_state, raise_pending_error

FORGE = forge.forge_sampling()


def alphas_cumprod_of(denoiser):
    """The model's alpha_bar_t, read back from the denoiser's sigma table (whatever schedule the host loaded)."""
    sigmas = denoiser.sigmas.double().cpu()
    return 1.0 / (1.0 + sigmas**2)


def tcd_gamma(p) -> float:
    """The panel's gamma when the panel is on for this generation, else the Settings page's default."""
    state = generation_state(p)
    if state.enabled:
        return float(state.settings.gamma)
    return float(getattr(shared.opts, PARAMS_BY_KEY["gamma"].setting, DEFAULTS["gamma"]))


class CompVisDenoiser(k_diffusion.external.CompVisDenoiser):
    def forward(self, input, sigma, **kwargs):
        return super().forward(input, sigma, **cfg_skip.image_cond_trimmed_to_batch(kwargs, input.shape[0]))


class LcmCFGDenoiser(forge.cfg_denoiser_base(FORGE)):
    """The host's CFG denoiser, with LCM's boundary condition around the UNet and no uncond pass at CFG 1."""

    boundary_condition = True

    @property
    def inner_model(self):
        if FORGE:
            return super().inner_model
        if self.model_wrap is None:
            # quantize=True: the UNet sees the integer timesteps the reference feeds it.
            denoiser = CompVisDenoiser(shared.sd_model, quantize=True)
            if self.boundary_condition:
                denoiser = sampling.LCMDenoiser(denoiser, alphas_cumprod_of(denoiser))
            self.model_wrap = denoiser
        return self.model_wrap

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if not FORGE:  # Forge skips the uncond pass at CFG 1 itself
            conds_list, _ = prompt_parser.reconstruct_multicond_batch(cond, self.step)
            if uncond_pass_is_redundant(conds_list, cond_scale):
                with cfg_skip.uncond_pass_skipped(self) as s_min_uncond:
                    return super().forward(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
        return super().forward(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)


class TcdCFGDenoiser(LcmCFGDenoiser):
    boundary_condition = False


class LcmSampler(sd_samplers_kdiffusion.KDiffusionSampler):
    cfg_denoiser = LcmCFGDenoiser
    make_sigmas = staticmethod(schedules.lcm_sigmas)

    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname, sd_model, options)
        self.model_wrap_cfg = self.cfg_denoiser(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_sigmas(self, p, steps, strength=1.0):
        return self.make_sigmas(alphas_cumprod_of(self.model_wrap), steps, strength=strength).float().cpu()

    def sampler_kwargs(self, p, x):
        # The host swaps k_diffusion.sampling.torch for its seeded RNG in initialize(); this noise
        # sampler calls through it, so seeds, subseeds and batches behave as with built-in samplers.
        return {"noise_sampler": k_diffusion.sampling.default_noise_sampler(x)}

    def run(self, p, x, sigmas, conditioning, unconditional_conditioning, image_conditioning):
        extra_kwargs = self.initialize(p)
        extra_kwargs.update(self.sampler_kwargs(p, x))
        self.last_latent = x
        self.sampler_extra_args = {
            "cond": conditioning,
            "image_cond": image_conditioning,
            "uncond": unconditional_conditioning,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": self.s_min_uncond,
        }
        with self.forge_sampling_pass(x):
            samples = self.launch_sampling(len(sigmas) - 1, lambda: self.func(
                self.model_wrap_cfg, x, sigmas, extra_args=self.sampler_extra_args,
                disable=False, callback=self.callback_state, **extra_kwargs))
        sampler_api.add_sampler_infotext(self, p)
        return samples

    def forge_sampling_pass(self, x):
        """Forge: the pass' UNet loaded for sampling, with LCM's boundary condition after CFG. It is affine in
        x_0, so applying it after CFG equals applying it to every CFG branch. A1111: nothing to do."""
        if not FORGE:
            return contextlib.nullcontext()
        post_cfg = None
        if self.model_wrap_cfg.boundary_condition:
            post_cfg = sampling.LCMDenoiser(lambda x, sigma, denoised: denoised, alphas_cumprod_of(self.model_wrap))
        return forge.forge_sampling_pass(FORGE, self.model_wrap.inner_model, x, post_cfg)

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        raise_pending_error(p)
        sigmas = self.get_sigmas(p, steps or p.steps)
        # diffusers starts from x_T = z; in k-diffusion coordinates that is z * sqrt(1 + sigma_max^2)
        # (the host's sigma_max * z would start 0.23% short of the reference).
        x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
        return self.run(p, x, sigmas, conditioning, unconditional_conditioning, image_conditioning)

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        raise_pending_error(p)
        try:
            steps, strength, warning = img2img_plan(steps or p.steps, float(p.denoising_strength))
        except ValueError as e:
            abort_generation(str(e))
        if warning:
            add_infotext_warning(p, warning)
            print(f"LCM-LoRA: {warning}")
        sigmas = self.get_sigmas(p, steps, strength=strength)
        xi = sampler_api.noised_latent(shared.sd_model, x, noise, sigmas[0])
        xi = sampler_api.with_img2img_extra_noise(p, x, xi, noise)
        self.model_wrap_cfg.init_latent = x
        return self.run(p, xi, sigmas, conditioning, unconditional_conditioning, image_conditioning)


class TcdSampler(LcmSampler):
    cfg_denoiser = TcdCFGDenoiser
    make_sigmas = staticmethod(schedules.tcd_sigmas)

    def sampler_kwargs(self, p, x):
        gamma = tcd_gamma(p)
        p.extra_generation_params[PARAMS_BY_KEY["gamma"].infotext] = gamma
        return {**super().sampler_kwargs(p, x), "gamma": gamma, "alphas_cumprod": alphas_cumprod_of(self.model_wrap)}


SAMPLERS = [
    sd_samplers_common.SamplerData(
        SAMPLER_LCM, lambda model: LcmSampler(sampling.sample_lcm, model), ["lcm_lora", "k_lcm_lora"], {}),
    sd_samplers_common.SamplerData(
        SAMPLER_TCD, lambda model: TcdSampler(sampling.sample_tcd, model), ["tcd_lora", "k_tcd_lora"], {}),
]


def _without_ours(samplers):
    return [s for s in samplers if s.name not in SAMPLER_NAMES]


def _refresh_sampler_lists():
    for name in SAMPLER_NAMES:
        sd_samplers.all_samplers_map.pop(name, None)
    sd_samplers.all_samplers_map.update({s.name: s for s in sd_samplers.all_samplers if s.name in SAMPLER_NAMES})
    sd_samplers.set_samplers()
    sampler_api.clear_sampler_cache(sd_samplers)


def register_samplers():
    """Add (or replace, on Reload UI) our samplers; the host's own entries are never touched."""
    sd_samplers.all_samplers[:] = _without_ours(sd_samplers.all_samplers) + SAMPLERS
    _refresh_sampler_lists()


def unregister_samplers():
    sd_samplers.all_samplers[:] = _without_ours(sd_samplers.all_samplers)
    _refresh_sampler_lists()
