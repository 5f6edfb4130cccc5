"""WebUI glue: the "LCM-LoRA" and "LCM-LoRA TCD" samplers.

Only called inside the WebUI: every `modules` / `k_diffusion` import is inside a function, so importing
this file outside the WebUI is harmless. What the host's built-in "LCM" (1.8+) does differently:
- its default schedule is not the reference one (4 steps: t 999/679/339/19 vs diffusers 999/759/499/259);
- it runs the negative-prompt UNet pass at CFG 1, which cannot change the result;
- img2img cuts the step count instead of starting the full count at the strength's noise level.
Our names never collide with the host's "LCM" (sd-webui-animatediff#413 shows what a duplicate does).
On Forge the host's CFG denoiser drives the UNet (see `lib_lcm.webui_compat`); our samplers only add LCM's
boundary condition to it and load the UNet the way Forge's own samplers do.
"""
from __future__ import annotations

import contextlib
import functools
import math

from lib_lcm import webui_compat

SAMPLER_LCM = "LCM-LoRA"
SAMPLER_TCD = "LCM-LoRA TCD"
SAMPLER_NAMES = (SAMPLER_LCM, SAMPLER_TCD)
# Infotext keys the NGMS path writes; we borrow that path for the CFG-1 skip and must not leave them behind.
_NGMS_KEYS = ("NGMS", "NGMS all steps")
_MISSING = object()


class _OddStep(int):
    """A step counter whose parity test always says "odd".

    A1111 1.6-1.10 skip the uncond pass only when `self.step % 2` is true (plus NGMS conditions). Giving the
    host this value lets it run its own skip path (mask blending, callbacks, previews included) on every
    step; any arithmetic on it (`step += 1`) yields a plain int again, so prompt-editing schedules see the
    true step.
    """

    def __mod__(self, other):
        return 1


def uncond_pass_is_redundant(conds_list, cond_scale: float) -> bool:
    """True when CFG cannot change the result: scale 1 and, per image, AND-weights summing to 1.

    denoised = u + s * sum_i w_i (c_i - u) = (1 - s*sum w) u + s * sum w_i c_i, so u drops out iff s*sum w == 1.
    """
    if abs(cond_scale - 1.0) > 1e-9:
        return False
    return all(abs(sum(weight for _, weight in conds) - 1.0) < 1e-6 for conds in conds_list)


def img2img_plan(steps: int, strength: float, original_steps: int = 50):
    """(steps, strength, warning) for an img2img run that starts at the strength's noise level.

    diffusers refuses steps > int(original_steps * strength); in the WebUI we run the most steps the
    strength allows and say so, rather than failing a generation the user can't fix from the prompt.
    """
    available = int(original_steps * strength)
    if available < 1:
        raise ValueError(
            f"LCM-LoRA img2img needs denoising strength >= {1 / original_steps:g} "
            f"(got {strength:g}); raise the denoising strength"
        )
    if steps > available:
        return available, strength, (
            f"denoising strength {strength:g} allows at most {available} LCM steps; ran {available} instead of {steps}"
        )
    return steps, strength, None


@functools.cache
def _classes():
    import k_diffusion.external
    import k_diffusion.sampling
    import torch
    from modules import prompt_parser, sd_samplers_cfg_denoiser, sd_samplers_kdiffusion, shared
    from modules.shared import opts

    from lib_lcm import sampling, schedules, webui_processing

    forge = webui_compat.forge_sampling()
    # Forge's own k-diffusion denoiser: its `inner_model` gives the sigma table and (`.inner_model`) the sd_model
    # whose UNet patcher Forge's CFGDenoiser.forward runs.
    cfg_denoiser_base = sd_samplers_kdiffusion.CFGDenoiserKDiffusion if forge else sd_samplers_cfg_denoiser.CFGDenoiser

    class CompVisDenoiser(k_diffusion.external.CompVisDenoiser):
        def forward(self, input, sigma, **kwargs):
            # The host's uncond-skip path drops the uncond rows of x but not of the image conditioning; an
            # inpainting UNet concatenates that to x, so keep only the rows x has (the cond rows come first).
            cond = kwargs.get("cond")
            concat = cond.get("c_concat") if isinstance(cond, dict) else None
            if concat and concat[0] is not None and concat[0].shape[0] > input.shape[0]:
                kwargs["cond"] = {**cond, "c_concat": [concat[0][: input.shape[0]], *concat[1:]]}
            return super().forward(input, sigma, **kwargs)

    class LcmCFGDenoiser(cfg_denoiser_base):
        boundary_condition = True

        @property
        def inner_model(self):
            if forge:
                return super().inner_model
            if self.model_wrap is None:
                # quantize=True: the UNet sees the integer timesteps the reference feeds it.
                denoiser = CompVisDenoiser(shared.sd_model, quantize=True)
                if self.boundary_condition:
                    denoiser = sampling.LCMDenoiser(denoiser, alphas_cumprod_of(denoiser))
                self.model_wrap = denoiser
            return self.model_wrap

        def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
            if forge:  # Forge skips the uncond pass at CFG 1 itself
                return super().forward(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
            conds_list, _ = prompt_parser.reconstruct_multicond_batch(cond, self.step)
            if not uncond_pass_is_redundant(conds_list, cond_scale):
                return super().forward(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)

            params = self.p.extra_generation_params
            saved = {key: params.get(key, _MISSING) for key in _NGMS_KEYS}
            step = self.step
            self.step = _OddStep(step)
            try:
                return super().forward(x, sigma, uncond, cond, cond_scale, math.inf, image_cond)
            finally:
                if isinstance(self.step, _OddStep):  # forward raised before its own `step += 1`
                    self.step = step
                for key, value in saved.items():
                    if value is _MISSING:
                        params.pop(key, None)
                    else:
                        params[key] = value

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
            steps = len(sigmas) - 1
            with self.forge_sampling_pass(x) if forge else contextlib.nullcontext():
                samples = self.launch_sampling(steps, lambda: self.func(
                    self.model_wrap_cfg, x, sigmas, extra_args=self.sampler_extra_args,
                    disable=False, callback=self.callback_state, **extra_kwargs))
            webui_compat.add_sampler_infotext(self, p)
            return samples

        @contextlib.contextmanager
        def forge_sampling_pass(self, x):
            """Forge: load this pass' UNet (LoRA patches applied) for sampling, as Forge's samplers do, with LCM's
            boundary condition as a post-CFG function on a clone of its patcher; the pass' own patcher is put
            back afterwards. Post-CFG is before mask blending, and the boundary condition is affine in x_0, so
            applying it after CFG equals applying it to every CFG branch."""
            sd_model = self.model_wrap.inner_model
            pass_unet = unet = sd_model.forge_objects.unet
            if self.model_wrap_cfg.boundary_condition:
                unet = pass_unet.clone()
                with_boundary_condition = sampling.LCMDenoiser(
                    lambda x, sigma, denoised: denoised, alphas_cumprod_of(self.model_wrap))
                unet.set_model_sampler_post_cfg_function(
                    lambda args: with_boundary_condition(args["input"], args["sigma"], denoised=args["denoised"]))
                sd_model.forge_objects.unet = unet
            try:
                forge.sampling_prepare(unet, x=x)
                try:
                    yield unet
                finally:
                    forge.sampling_cleanup(unet)
            finally:
                sd_model.forge_objects.unet = pass_unet

        def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
            webui_processing.raise_pending_error(p)
            sigmas = self.get_sigmas(p, steps or p.steps)
            # diffusers starts from x_T = z; in k-diffusion coordinates that is z * sqrt(1 + sigma_max^2)
            # (the host's sigma_max * z would start 0.23% short of the reference).
            x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
            return self.run(p, x, sigmas, conditioning, unconditional_conditioning, image_conditioning)

        def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                           image_conditioning=None):
            webui_processing.raise_pending_error(p)
            try:
                steps, strength, warning = img2img_plan(steps or p.steps, float(p.denoising_strength))
            except ValueError as e:
                webui_processing.abort_generation(str(e))
            if warning:
                p.extra_generation_params["LCM-LoRA warning"] = warning
                print(f"LCM-LoRA: {warning}")
            sigmas = self.get_sigmas(p, steps, strength=strength)
            add_noise = getattr(shared.sd_model, "add_noise_to_latent", None)
            xi = add_noise(x, noise, sigmas[0]) if add_noise else x + noise * sigmas[0]
            if opts.img2img_extra_noise > 0:
                from modules.script_callbacks import ExtraNoiseParams, extra_noise_callback

                p.extra_generation_params["Extra noise"] = opts.img2img_extra_noise
                extra_noise_params = ExtraNoiseParams(noise, x, xi)
                extra_noise_callback(extra_noise_params)
                xi = xi + extra_noise_params.noise * opts.img2img_extra_noise
            self.model_wrap_cfg.init_latent = x
            return self.run(p, xi, sigmas, conditioning, unconditional_conditioning, image_conditioning)

    class TcdSampler(LcmSampler):
        cfg_denoiser = TcdCFGDenoiser
        make_sigmas = staticmethod(schedules.tcd_sigmas)

        def sampler_kwargs(self, p, x):
            gamma = tcd_gamma(p)
            p.extra_generation_params["TCD gamma"] = gamma
            return {**super().sampler_kwargs(p, x), "gamma": gamma,
                    "alphas_cumprod": alphas_cumprod_of(self.model_wrap)}

    return LcmSampler, TcdSampler


def alphas_cumprod_of(denoiser):
    """The model's alpha_bar_t, read back from the denoiser's sigma table (whatever schedule the host loaded)."""
    sigmas = denoiser.sigmas.double().cpu()
    return 1.0 / (1.0 + sigmas**2)


def tcd_gamma(p) -> float:
    """The panel's gamma when the panel set one for this generation, else the settings default."""
    gamma = getattr(p, "lcm_lora_gamma", None)
    if gamma is None:
        from modules import shared

        gamma = getattr(shared.opts, "lcm_lora_tcd_gamma", 0.3)
    return float(gamma)


def sampler_data_list():
    from modules import sd_samplers_common

    from lib_lcm import sampling

    lcm_cls, tcd_cls = _classes()
    return [
        sd_samplers_common.SamplerData(
            SAMPLER_LCM, lambda model: lcm_cls(sampling.sample_lcm, model), ["lcm_lora", "k_lcm_lora"], {}),
        sd_samplers_common.SamplerData(
            SAMPLER_TCD, lambda model: tcd_cls(sampling.sample_tcd, model), ["tcd_lora", "k_tcd_lora"], {}),
    ]


def _refresh_sampler_lists():
    from modules import sd_samplers

    for name in SAMPLER_NAMES:
        sd_samplers.all_samplers_map.pop(name, None)
    sd_samplers.all_samplers_map.update({s.name: s for s in sd_samplers.all_samplers if s.name in SAMPLER_NAMES})
    sd_samplers.set_samplers()
    webui_compat.clear_sampler_cache(sd_samplers)


def register_samplers():
    """Add (or replace, on Reload UI) our samplers; the host's own entries are never touched."""
    from modules import sd_samplers

    ours = sampler_data_list()
    sd_samplers.all_samplers[:] = [s for s in sd_samplers.all_samplers if s.name not in SAMPLER_NAMES] + ours
    _refresh_sampler_lists()


def unregister_samplers():
    from modules import sd_samplers

    sd_samplers.all_samplers[:] = [s for s in sd_samplers.all_samplers if s.name not in SAMPLER_NAMES]
    _refresh_sampler_lists()
