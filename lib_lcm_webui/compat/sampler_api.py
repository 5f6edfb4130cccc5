"""The host's sampler API by version: what our samplers call where A1111 releases differ.

- 1.6: img2img "Extra noise" and its callback.
- 1.8: `Sampler.add_infotext(p)` (before: samplers wrote "Pad conds" inline).
- 1.9: schedule types (`p.scheduler`, `p.hr_scheduler`, the cached `sd_samplers.get_sampler_and_scheduler`).
- Hosts with their own img2img noising (`sd_model.add_noise_to_latent`).
"""
from __future__ import annotations

from modules import shared

try:  # 1.6+: img2img extra noise and its callback
    from modules.script_callbacks import ExtraNoiseParams, extra_noise_callback
except ImportError:
    ExtraNoiseParams = extra_noise_callback = None


def noised_latent(sd_model, x, noise, sigma):
    """img2img's starting latent; hosts with their own noising (`add_noise_to_latent`) use theirs."""
    add_noise = getattr(sd_model, "add_noise_to_latent", None)
    return add_noise(x, noise, sigma) if add_noise else x + noise * sigma


def with_img2img_extra_noise(p, x, xi, noise):
    """The host's "Extra noise" img2img option (settings), with its callback, as its own samplers apply it."""
    amount = getattr(shared.opts, "img2img_extra_noise", 0)
    if amount <= 0 or ExtraNoiseParams is None:
        return xi
    p.extra_generation_params["Extra noise"] = amount
    params = ExtraNoiseParams(noise, x, xi)
    extra_noise_callback(params)
    return xi + params.noise * amount


def add_sampler_infotext(sampler, p) -> None:
    """The infotext a k-diffusion sampler adds after sampling ("Pad conds" ...)."""
    add_infotext = getattr(sampler, "add_infotext", None)  # 1.8+
    if add_infotext is not None:
        add_infotext(p)
    elif getattr(sampler.model_wrap_cfg, "padded_cond_uncond", False):  # 1.6-1.7 wrote it inline
        p.extra_generation_params["Pad conds"] = True


def clear_sampler_cache(sd_samplers) -> None:
    """Forget the cached sampler/schedule look-up after the sampler list changed (1.9+; none before)."""
    cached = getattr(sd_samplers, "get_sampler_and_scheduler", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def reset_schedule_types(p, hires: bool) -> None:
    """Set the schedule type(s) to "Automatic" on hosts that have them (1.9+): our samplers make their own
    schedule, and the infotext must not name one that was not used."""
    if hasattr(p, "scheduler"):
        p.scheduler = "Automatic"
    if hires and hasattr(p, "hr_scheduler"):
        p.hr_scheduler = "Automatic"
