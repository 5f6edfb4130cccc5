"""LCM, TCD and "trailing" timestep schedules, and their k-diffusion sigmas.

The timesteps are exactly those of diffusers' `LCMScheduler.set_timesteps` and `TCDScheduler.set_timesteps`
(diffusers >= 0.24): the distillation grid `t_n = n * k - 1` (`k = train_steps // original_steps`, the skipping
step of LCM, arXiv 2310.04378) is reversed and `steps` evenly spaced indices are taken from it. The "trailing"
timesteps are those of `DDIMScheduler` / `EulerDiscreteScheduler.set_timesteps` with `timestep_spacing="trailing"`
(arXiv 2305.08891, Table 2), which Hyper-SD, SDXL-Lightning and DMD2 were distilled on. Requests that diffusers
rejects are rejected here too, with a `ValueError` that names the limit and the fix.

k-diffusion works in sigmas, `sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`, where the sample is
`x = x_0 + sigma * eps`; diffusers' (variance preserving) sample at the same noise level is
`x_t = x / sqrt(1 + sigma^2) = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch

LCM_ORIGINAL_STEPS = 50
"""Length of the distillation timestep grid of every published LCM / LCM-LoRA / TCD checkpoint (diffusers'
`original_inference_steps` scheduler config default)."""


def scaled_linear_alphas_cumprod(
    beta_start: float = 0.00085, beta_end: float = 0.012, train_steps: int = 1000
) -> torch.Tensor:
    """Stable Diffusion's `scaled_linear` schedule: `alpha_bar_t = prod_{s<=t} (1 - beta_s)`, float32.

    Computed as diffusers' `LCMScheduler` / `TCDScheduler` compute it (betas linear in sqrt space), so the values are
    bit-identical to `LCMScheduler().alphas_cumprod`.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, train_steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def _check_integer(name: str, value, low: int, high: int | None = None, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high and value > high):
        bounds = f"from {low} to {high}" if high else f"of at least {low}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}{why}.")


def _check_strength(strength) -> None:
    if isinstance(strength, bool) or not isinstance(strength, Real) or not 0.0 < strength <= 1.0:
        raise ValueError(f"strength (denoising strength) must be in (0, 1], got {strength!r}.")


def _evenly_spaced(
    origin_timesteps: np.ndarray, steps: int, limit: int, grid: str, strength: float
) -> list[int]:
    """Take `steps` evenly spaced entries of the reversed grid (diffusers' `floor(linspace(..., endpoint=False))`)."""
    available = len(origin_timesteps)
    if steps > available:
        fix = f"use at most {available} steps"
        if steps <= limit:
            fix += f" or raise the denoising strength to at least {steps / limit:g}"
        raise ValueError(
            f"{steps} steps do not fit the {grid}: at strength {strength:g} it has only {available} timesteps;"
            f" {fix}."
        )
    origin_timesteps = origin_timesteps[::-1]
    indices = np.floor(np.linspace(0, available, num=steps, endpoint=False)).astype(np.int64)
    return [int(t) for t in origin_timesteps[indices]]


def lcm_timesteps(
    steps: int, strength: float = 1.0, original_steps: int = LCM_ORIGINAL_STEPS, train_steps: int = 1000
) -> list[int]:
    """Timesteps of LCM multistep sampling, as diffusers' `LCMScheduler.set_timesteps(steps, strength=strength)`.

    Args:
        steps (`int`): number of sampling steps, at most `int(original_steps * strength)`.
        strength (`float`, defaults to 1.0): img2img denoising strength in (0, 1]; keeps the first
            `int(original_steps * strength)` timesteps of the distillation grid.
        original_steps (`int`, defaults to 50): length of the distillation grid (diffusers'
            `original_inference_steps`).
        train_steps (`int`, defaults to 1000): number of training timesteps.

    Returns:
        `list[int]`: `steps` strictly decreasing timesteps in `[0, train_steps)`, e.g. 4 steps -> [999, 759, 499, 259].

    Raises:
        `ValueError`: for a request diffusers rejects (too many steps for the grid and strength) or a malformed one.
    """
    _check_integer("train_steps", train_steps, 1)
    _check_integer(
        "original_steps",
        original_steps,
        1,
        train_steps,
        ": the distillation grid is a subset of the training timesteps",
    )
    _check_integer("steps", steps, 1)
    _check_strength(strength)
    # 1. The distillation grid t_n = n * k - 1, n = 1..int(original_steps * strength).
    k = train_steps // original_steps
    origin_timesteps = np.arange(1, int(original_steps * strength) + 1) * k - 1
    # 2. Evenly spaced indices into the reversed grid.
    return _evenly_spaced(
        origin_timesteps, steps, original_steps, f"{original_steps}-step LCM schedule", strength
    )


def tcd_timesteps(
    steps: int,
    strength: float = 1.0,
    original_inference_steps: int | None = None,
    train_steps: int = 1000,
) -> list[int]:
    """Timesteps of TCD sampling, as diffusers' `TCDScheduler.set_timesteps(steps, original_inference_steps, strength=...)`.

    Args:
        steps (`int`): number of sampling steps.
        strength (`float`, defaults to 1.0): img2img denoising strength in (0, 1].
        original_inference_steps (`int`, *optional*): as diffusers' argument of that name. `None` (what diffusers'
            pipelines pass) uses the scheduler config's 50-step distillation grid, giving the LCM timesteps. An
            integer switches to diffusers' "customised" schedule: any of the first `int(train_steps * strength)`
            training timesteps, with `steps` capped at `original_inference_steps`.
        train_steps (`int`, defaults to 1000): number of training timesteps.

    Returns:
        `list[int]`: `steps` strictly decreasing timesteps in `[0, train_steps)`.

    Raises:
        `ValueError`: for a request diffusers rejects or a malformed one.
    """
    if original_inference_steps is None:
        return lcm_timesteps(steps, strength, LCM_ORIGINAL_STEPS, train_steps)
    _check_integer("train_steps", train_steps, 1)
    _check_integer("original_inference_steps", original_inference_steps, 1)
    _check_integer("steps", steps, 1)
    _check_strength(strength)
    if steps > original_inference_steps:
        raise ValueError(
            f"{steps} steps exceed original_inference_steps={original_inference_steps}; use at most"
            f" {original_inference_steps} steps or raise original_inference_steps."
        )
    # The customised grid is every training timestep below int(train_steps * strength).
    origin_timesteps = np.arange(0, int(train_steps * strength))
    return _evenly_spaced(
        origin_timesteps, steps, train_steps, f"{train_steps}-timestep TCD schedule", strength
    )


def trailing_timesteps(steps: int, train_steps: int = 1000) -> list[int]:
    """Timesteps of diffusers' `timestep_spacing="trailing"`: `round(train_steps - i * train_steps / steps) - 1`.

    As `DDIMScheduler.set_timesteps` and `EulerDiscreteScheduler.set_timesteps` compute them, float round-off
    included: 4 steps -> [999, 749, 499, 249], 12 steps -> [999, 916, 832, 749, ...]. The schedule always starts at
    the last training timestep (pure noise), unlike the "leading" spacing of the WebUIs' DDIM.

    Args:
        steps (`int`): number of sampling steps.
        train_steps (`int`, defaults to 1000): number of training timesteps.

    Raises:
        `ValueError`: for a malformed request, or a step count where diffusers' float spacing yields one timestep
            more than asked (61 steps is the first): diffusers would run a different count there.
    """
    _check_integer("train_steps", train_steps, 1)
    _check_integer("steps", steps, 1, train_steps, ": every step needs its own training timestep")
    # 1. A float step, exactly as diffusers writes it: its round-off decides timesteps such as 832 (not 833).
    timesteps = np.round(np.arange(train_steps, 0, -train_steps / steps)).astype(np.int64) - 1
    if len(timesteps) != steps:
        raise ValueError(
            f"diffusers' trailing spacing gives {len(timesteps)} timesteps for {steps} steps; use {steps - 1} or"
            f" {steps + 1} steps."
        )
    return [int(t) for t in timesteps]


def ddim_prev_timesteps(timesteps: list[int], steps: int, train_steps: int = 1000) -> list[int]:
    """The timestep each DDIM step lands on: `DDIMScheduler.step`'s `prev_timestep = t - train_steps // steps`.

    `steps` is the whole schedule's length (diffusers' `num_inference_steps`), also when img2img runs only its tail.
    The landing is not always the next step's timestep: at 12 trailing steps, 916 lands on 833 and the next step
    evaluates the UNet at 832 on that sample. A negative landing (-1 past the first training timestep) is where
    DDIM uses `final_alpha_cumprod`, see `ddim_prev_sigmas`.
    """
    _check_integer("steps", steps, 1, train_steps)
    return [max(int(t) - train_steps // steps, -1) for t in timesteps]


def ddim_prev_sigmas(
    prev_timesteps: list[int], alphas_cumprod: torch.Tensor, set_alpha_to_one: bool = False
) -> torch.Tensor:
    """k-diffusion sigmas of DDIM's landings (`ddim_prev_timesteps`), on the device of `alphas_cumprod`.

    A landing of -1 takes DDIM's `final_alpha_cumprod`: 1 (sigma 0, a clean sample) with `set_alpha_to_one=True`,
    else `alpha_bar_0` (sigma ~0.0292 for Stable Diffusion), what Stable Diffusion's scheduler configs (and so the
    Hyper-SD model card's `DDIMScheduler.from_config(...)`) set: the last step then ends on the timestep-0 sample.
    """
    sigmas = training_sigmas(alphas_cumprod)
    final = sigmas.new_zeros([]) if set_alpha_to_one else sigmas[0]
    return torch.stack([sigmas[t] if t >= 0 else final for t in prev_timesteps])


def img2img_tail(timesteps: list[int], strength: float) -> list[int]:
    """The timesteps diffusers' img2img pipelines run: `get_timesteps` keeps the last `min(int(n * strength), n)`.

    This is the img2img rule of every scheduler without a `strength` argument of its own (DDIM, Euler, and
    `LCMScheduler` given a custom timestep list): the tail of the schedule the LoRA was distilled on.

    Raises:
        `ValueError`: when the strength keeps no timestep at all, naming the smallest strength that keeps one.
    """
    _check_strength(strength)
    keep = min(int(len(timesteps) * strength), len(timesteps))
    if keep < 1:
        raise ValueError(
            f"denoising strength {strength:g} keeps none of the {len(timesteps)} steps; raise the denoising strength"
            f" to at least {1 / len(timesteps):g}"
        )
    return list(timesteps[len(timesteps) - keep:])


def training_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """`sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)` for every training timestep t (ascending), >= float32."""
    alphas_cumprod = alphas_cumprod.to(torch.promote_types(alphas_cumprod.dtype, torch.float32))
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def timestep_to_sigma(timestep: torch.Tensor | int | list[int], alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """k-diffusion sigma of integer training timestep(s), on the device of `alphas_cumprod`."""
    timestep = torch.as_tensor(timestep, dtype=torch.long, device=alphas_cumprod.device)
    return training_sigmas(alphas_cumprod[timestep])


def sigma_to_timestep(sigma: torch.Tensor | float, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Integer training timestep(s) whose sigma is nearest to `sigma` in log space (long tensor, `sigma`'s shape).

    Exact for sigmas taken from the training table (neighbouring sigmas differ by > 0.5% for SD), so it inverts
    `timestep_to_sigma` even in float32. Sigmas at or below the smallest training sigma, 0 included, map to 0.
    """
    sigmas = training_sigmas(alphas_cumprod)
    sigma = torch.as_tensor(sigma, device=sigmas.device, dtype=sigmas.dtype)
    log_sigma = sigma.clamp(min=sigmas[0]).log()
    return (log_sigma[..., None] - sigmas.log()).abs().argmin(dim=-1)


def timesteps_sigmas(timesteps: list[int], alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """k-diffusion sigmas of integer timesteps (the UNet's, in order), with the trailing 0 samplers end on."""
    sigmas = timestep_to_sigma(timesteps, alphas_cumprod)
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def lcm_sigmas(
    alphas_cumprod: torch.Tensor, steps: int, strength: float = 1.0, original_steps: int = LCM_ORIGINAL_STEPS
) -> torch.Tensor:
    """k-diffusion sigmas of `lcm_timesteps` (descending, with a trailing 0), for the model's `alphas_cumprod`."""
    return timesteps_sigmas(lcm_timesteps(steps, strength, original_steps, len(alphas_cumprod)), alphas_cumprod)


def tcd_sigmas(
    alphas_cumprod: torch.Tensor,
    steps: int,
    strength: float = 1.0,
    original_inference_steps: int | None = None,
) -> torch.Tensor:
    """k-diffusion sigmas of `tcd_timesteps` (descending, with a trailing 0), for the model's `alphas_cumprod`."""
    return timesteps_sigmas(
        tcd_timesteps(steps, strength, original_inference_steps, len(alphas_cumprod)), alphas_cumprod
    )


def tcd_intermediate_timestep(timestep_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """TCD's `s = floor((1 - gamma) * t_next)` (arXiv 2402.19159, strategic stochastic sampling).

    Evaluated as diffusers' `TCDScheduler.step` evaluates it (a long tensor times a Python float, in torch's default
    float dtype), so that a product landing next to an integer floors the same way.
    """
    timestep_next = torch.as_tensor(timestep_next, dtype=torch.long)
    return torch.floor((1 - gamma) * timestep_next).to(torch.long)


def img2img_plan(steps: int, strength: float, original_steps: int = LCM_ORIGINAL_STEPS):
    """(steps, strength, warning) for an img2img run that starts at the strength's noise level.

    diffusers refuses steps > int(original_steps * strength); in the WebUI we run the most steps the
    strength allows and say so, rather than failing a generation the user can't fix from the prompt.
    Raises ValueError (naming the fix) when the strength allows no step at all.
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


__all__ = [
    "LCM_ORIGINAL_STEPS",
    "ddim_prev_sigmas",
    "ddim_prev_timesteps",
    "img2img_tail",
    "lcm_sigmas",
    "lcm_timesteps",
    "scaled_linear_alphas_cumprod",
    "sigma_to_timestep",
    "tcd_intermediate_timestep",
    "tcd_sigmas",
    "tcd_timesteps",
    "timestep_to_sigma",
    "timesteps_sigmas",
    "trailing_timesteps",
    "training_sigmas",
    "img2img_plan",
]
