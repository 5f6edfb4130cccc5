"""The sampling recipe each few-step LoRA was distilled for, as its model card runs it in diffusers, and the plan
(timesteps, sigmas, landings, start latent) that `lib_lcm.sampling` runs it with.

| recipe           | the model card's diffusers scheduler                                   | sampler                |
|------------------|------------------------------------------------------------------------|------------------------|
| `lcm`            | `LCMScheduler` (LCM-LoRA)                                              | `sample_lcm`           |
| `tcd`            | `TCDScheduler`, `eta=0.3` passed explicitly (TCD-LoRA)                 | `sample_tcd`, gamma .3 |
| `tcd-eta1`       | `TCDScheduler`, `eta=1.0` (Hyper-SD's unified 1-step LoRA)             | `sample_tcd`, gamma 1  |
| `ddim-trailing`  | `DDIMScheduler.from_config(sd_config, timestep_spacing="trailing")`    | `sample_ddim`, landing |
|                  | eta 0, `set_alpha_to_one=False` from SD's config (Hyper-SD N-step/CFG) | on `t - 1000 // n`     |
| `euler-trailing` | `EulerDiscreteScheduler(..., timestep_spacing="trailing")` (Lightning) | `sample_ddim` = Euler  |
| `lcm-trailing`   | `LCMScheduler`, `timesteps=[999, 749, 499, 249]` (DMD2)                | `sample_lcm`           |

Every recipe but Euler starts from diffusers' `x_T = z` (`init_noise_sigma` = 1), i.e. k-diffusion's
`x = z * sqrt(1 + sigma_max^2)`; trailing Euler starts from `x = z * sigma_max`. img2img follows diffusers too:
`LCMScheduler` / `TCDScheduler` keep the step count on a grid cut at the strength (`set_timesteps(..., strength)`),
the trailing schedules run the tail of the full schedule (the img2img pipelines' `get_timesteps`), so every step
stays on a timestep the LoRA was distilled on. DMD2's list at other step counts is the trailing spacing, which
gives exactly [999, 749, 499, 249] at 4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import sample_ddim, sample_lcm, sample_tcd
from .schedules import (
    ddim_prev_sigmas,
    ddim_prev_timesteps,
    img2img_plan,
    img2img_tail,
    lcm_timesteps,
    timesteps_sigmas,
    trailing_timesteps,
)

SAMPLE_FUNCTIONS = {"lcm": sample_lcm, "tcd": sample_tcd, "ddim": sample_ddim}


@dataclass(frozen=True)
class Recipe:
    """One reference recipe.

    Args:
        key (`str`): the recipe's name in the catalogue and the infotext.
        scheduler (`str`): what the model card runs, in words (status line, README).
        sampler (`str`): "lcm" (with LCM's boundary condition), "tcd" or "ddim".
        spacing (`str`): "lcm" (the 50-step distillation grid, `lcm_timesteps`) or "trailing" (`trailing_timesteps`).
        gamma (`float`, *optional*): TCD's eta, passed explicitly (diffusers' pipelines pass eta 0 otherwise).
        ddim_landing (`bool`, defaults to False): land each step on DDIM's `t - 1000 // n`, the last one on
            `alpha_bar_0` (`set_alpha_to_one=False`); False lands on the next sigma and ends on 0 (Euler).
        start_at_sigma_max (`bool`, defaults to False): txt2img starts from `z * sigma_max` (trailing Euler's
            `init_noise_sigma`) instead of diffusers' `x_T = z`.
    """

    key: str
    scheduler: str
    sampler: str
    spacing: str
    gamma: float | None = None
    ddim_landing: bool = False
    start_at_sigma_max: bool = False

    @property
    def sample(self):
        """The `lib_lcm.sampling` function that runs this recipe."""
        return SAMPLE_FUNCTIONS[self.sampler]

    @property
    def boundary_condition(self) -> bool:
        """Whether the denoiser is wrapped in LCM's boundary condition (`LCMDenoiser`)."""
        return self.sampler == "lcm"


RECIPES = {
    recipe.key: recipe
    for recipe in (
        Recipe("lcm", "LCMScheduler", "lcm", "lcm"),
        Recipe("tcd", "TCDScheduler, eta 0.3", "tcd", "lcm", gamma=0.3),
        Recipe("tcd-eta1", "TCDScheduler, eta 1.0", "tcd", "lcm", gamma=1.0),
        Recipe("ddim-trailing", "DDIMScheduler, trailing, eta 0", "ddim", "trailing", ddim_landing=True),
        Recipe("euler-trailing", "EulerDiscreteScheduler, trailing", "ddim", "trailing", start_at_sigma_max=True),
        Recipe("lcm-trailing", "LCMScheduler, timesteps 999/749/499/249", "lcm", "trailing"),
    )
}


@dataclass(frozen=True)
class SamplingPlan:
    """What one generation runs: the UNet's timesteps, their sigmas (trailing 0), DDIM's landings, a warning."""

    recipe: Recipe
    timesteps: tuple
    sigmas: torch.Tensor
    sigmas_prev: torch.Tensor | None = None
    warning: str | None = None

    def start_scale(self) -> torch.Tensor:
        """The factor from unit noise z to the txt2img start latent x (k-diffusion coordinates)."""
        sigma_max = self.sigmas[0]
        return sigma_max if self.recipe.start_at_sigma_max else (1 + sigma_max**2).sqrt()

    def sampler_kwargs(self, gamma: float | None = None) -> dict:
        """The recipe's own arguments of its sampling function; `gamma` overrides the recipe's TCD eta."""
        if self.recipe.sampler == "tcd":
            return {"gamma": self.recipe.gamma if gamma is None else gamma}
        if self.sigmas_prev is not None:
            return {"sigmas_prev": self.sigmas_prev}
        return {}


def recipe_timesteps(recipe: Recipe, steps: int, strength: float = 1.0, train_steps: int = 1000):
    """(timesteps, warning) of `recipe` for `steps` at img2img `strength` (1 = text-to-image), see the module doc.

    Raises:
        `ValueError`: naming the fix, when the strength allows no step at all (or a malformed request).
    """
    if recipe.spacing == "lcm":
        warning = None
        if strength < 1.0:
            steps, strength, warning = img2img_plan(steps, strength)
        return lcm_timesteps(steps, strength, train_steps=train_steps), warning
    return img2img_tail(trailing_timesteps(steps, train_steps), strength), None


def plan_sampling(
    recipe: Recipe | str, alphas_cumprod: torch.Tensor, steps: int, strength: float = 1.0
) -> SamplingPlan:
    """The plan of `recipe` for a model's `alphas_cumprod` (float64 keeps the schedule maths exact).

    `steps` is the schedule's length the user picked (diffusers' `num_inference_steps`); img2img may run fewer.
    """
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    train_steps = len(alphas_cumprod)
    timesteps, warning = recipe_timesteps(recipe, steps, strength, train_steps)
    sigmas = timesteps_sigmas(timesteps, alphas_cumprod)
    sigmas_prev = None
    if recipe.ddim_landing:
        sigmas_prev = ddim_prev_sigmas(ddim_prev_timesteps(timesteps, steps, train_steps), alphas_cumprod)
    return SamplingPlan(recipe, tuple(timesteps), sigmas, sigmas_prev, warning)


__all__ = ["RECIPES", "SAMPLE_FUNCTIONS", "Recipe", "SamplingPlan", "plan_sampling", "recipe_timesteps"]
