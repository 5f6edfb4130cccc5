"""Our samplers, one per reference recipe (lib_lcm.recipes), declared like the host's own (`modules/sd_samplers_lcm.py`):
"LCM-LoRA" (LCMScheduler), "LCM-LoRA TCD" (TCDScheduler), "LCM-LoRA DDIM trailing" (Hyper-SD), "LCM-LoRA Euler
trailing" (SDXL-Lightning) and "LCM-LoRA LCM trailing" (DMD2's timestep list). Each takes its timesteps, sigmas, start
latent and img2img rule from `lib_lcm.recipes.plan_sampling`.

What the host's built-in "LCM" (1.8+) does differently:
- its default schedule is not the reference one (4 steps: t 999/679/339/19 vs diffusers 999/759/499/259);
- it runs the negative-prompt UNet pass at CFG 1, which cannot change the result;
- img2img cuts the step count instead of starting the full count at the strength's noise level.
On Forge the host's CFG denoiser drives the UNet (see `compat.forge`); our samplers only add LCM's boundary condition
to it and load the UNet the way Forge's own samplers do.
"""
from __future__ import annotations

import contextlib

import k_diffusion.sampling
import torch
from modules import prompt_parser, sd_samplers, sd_samplers_common, sd_samplers_kdiffusion, shared

from lib_lcm import sampling
from lib_lcm.params import DEFAULTS, PARAMS_BY_KEY, SAMPLER_NAMES, SAMPLERS_BY_RECIPE
from lib_lcm.recipes import RECIPES, SamplingPlan, plan_sampling
from lib_lcm.sampling import uncond_pass_is_redundant
from lib_lcm_webui.compat import cfg_skip, forge, sampler_api
from lib_lcm_webui.state import abort_generation, add_infotext_warning, generation_state, raise_pending_error

FORGE = forge.forge_sampling()


def alphas_cumprod_of(denoiser):
    """The model's alpha_bar_t, read back from the denoiser's sigma table (whatever schedule the host loaded)."""
    sigmas = denoiser.sigmas.double().cpu()
    return 1.0 / (1.0 + sigmas**2)


def tcd_gamma(p) -> float:
    """The panel's gamma when the panel is on for this generation (a file whose recipe fixes it, Hyper-SD's unified
    LoRA: the recipe's), else the Settings page's default."""
    state = generation_state(p)
    if state.enabled:
        fixed = RECIPES[state.recipe].gamma if state.recipe == "tcd-eta1" else None
        return float(state.settings.gamma if fixed is None else fixed)
    return float(getattr(shared.opts, PARAMS_BY_KEY["gamma"].setting, DEFAULTS["gamma"]))


class LcmCFGDenoiser(forge.cfg_denoiser_base(FORGE)):
    """The host's CFG denoiser, with LCM's boundary condition around the UNet and no uncond pass at CFG 1."""

    boundary_condition = True

    @property
    def inner_model(self):
        if FORGE:
            return super().inner_model
        if self.model_wrap is None:
            # quantize=True: the UNet sees the integer timesteps the reference feeds it.
            denoiser = cfg_skip.compvis_denoiser(shared.sd_model, quantize=True)
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
    recipe = "lcm"

    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname, sd_model, options)
        self.model_wrap_cfg = self.cfg_denoiser(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def plan(self, steps, strength=1.0) -> SamplingPlan:
        """The recipe's timesteps and sigmas (float64 maths) for the loaded model's schedule."""
        return plan_sampling(self.recipe, alphas_cumprod_of(self.model_wrap), steps, strength)

    def get_sigmas(self, p, steps, strength=1.0):
        return self.plan(steps, strength).sigmas.float().cpu()

    def sampler_kwargs(self, p, x, plan: SamplingPlan):
        # The host swaps k_diffusion.sampling.torch for its seeded RNG in initialize(); this noise
        # sampler calls through it, so seeds, subseeds and batches behave as with built-in samplers.
        return {"noise_sampler": k_diffusion.sampling.default_noise_sampler(x)}

    def run(self, p, x, plan, conditioning, unconditional_conditioning, image_conditioning):
        sigmas = plan.sigmas.float().cpu()
        extra_kwargs = self.initialize(p)
        extra_kwargs.update(self.sampler_kwargs(p, x, plan))
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
        plan = self.plan(steps or p.steps)
        sigma_max = plan.sigmas.float().cpu()[0]
        if RECIPES[self.recipe].start_at_sigma_max:
            x = x * sigma_max  # trailing Euler's own start (init_noise_sigma = sigma_max)
        else:
            # diffusers starts from x_T = z; in k-diffusion coordinates that is z * sqrt(1 + sigma_max^2)
            # (the host's sigma_max * z would start 0.23% short of the reference).
            x = x * torch.sqrt(1.0 + sigma_max ** 2.0)
        return self.run(p, x, plan, conditioning, unconditional_conditioning, image_conditioning)

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        raise_pending_error(p)
        try:
            plan = self.plan(steps or p.steps, float(p.denoising_strength))
        except ValueError as e:
            abort_generation(str(e))
        if plan.warning:
            add_infotext_warning(p, plan.warning)
            print(f"LCM-LoRA: {plan.warning}")
        xi = sampler_api.noised_latent(shared.sd_model, x, noise, plan.sigmas.float().cpu()[0])
        xi = sampler_api.with_img2img_extra_noise(p, x, xi, noise)
        self.model_wrap_cfg.init_latent = x
        return self.run(p, xi, plan, conditioning, unconditional_conditioning, image_conditioning)


class TcdSampler(LcmSampler):
    cfg_denoiser = TcdCFGDenoiser
    recipe = "tcd"

    def sampler_kwargs(self, p, x, plan):
        gamma = tcd_gamma(p)
        p.extra_generation_params[PARAMS_BY_KEY["gamma"].infotext] = gamma
        return {**super().sampler_kwargs(p, x, plan), "gamma": gamma,
                "alphas_cumprod": alphas_cumprod_of(self.model_wrap)}


class DdimTrailingSampler(LcmSampler):
    """Hyper-SD's recipe: deterministic DDIM on trailing timesteps, landing on DDIM's own `t - 1000 // n`."""

    cfg_denoiser = TcdCFGDenoiser
    recipe = "ddim-trailing"

    def sampler_kwargs(self, p, x, plan):
        return {"sigmas_prev": plan.sigmas_prev.float().cpu()}


class EulerTrailingSampler(DdimTrailingSampler):
    """SDXL-Lightning's recipe: Euler on trailing timesteps from `sigma_max * z`."""

    recipe = "euler-trailing"

    def sampler_kwargs(self, p, x, plan):
        return {}


class LcmTrailingSampler(LcmSampler):
    """DMD2's recipe: LCM's sampler with its boundary condition on the trailing list [999, 749, 499, 249]."""

    recipe = "lcm-trailing"


def _sampler_data(cls, func, aliases):
    name = SAMPLERS_BY_RECIPE[cls.recipe]
    return sd_samplers_common.SamplerData(name, lambda model: cls(func, model), aliases, {})


SAMPLERS = [
    _sampler_data(LcmSampler, sampling.sample_lcm, ["lcm_lora", "k_lcm_lora"]),
    _sampler_data(TcdSampler, sampling.sample_tcd, ["tcd_lora", "k_tcd_lora"]),
    _sampler_data(DdimTrailingSampler, sampling.sample_ddim, ["ddim_trailing_lora"]),
    _sampler_data(EulerTrailingSampler, sampling.sample_ddim, ["euler_trailing_lora"]),
    _sampler_data(LcmTrailingSampler, sampling.sample_lcm, ["lcm_trailing_lora"]),
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
