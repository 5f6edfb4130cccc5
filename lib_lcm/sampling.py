"""LCM, TCD and DDIM samplers with k-diffusion's sampler contract, step for step equal to diffusers' schedulers.

`model(x, sigma, **extra_args)` returns the denoised estimate of x_0 (k-diffusion convention); sigmas come from
`lib_lcm.schedules.lcm_sigmas` / `tcd_sigmas` (descending, trailing 0). A k-diffusion sample `x` at noise level
`sigma` is diffusers' sample `x_t = x / sqrt(1 + sigma^2)`, so:

- LCM (`LCMScheduler.step`): `x_prev = sqrt(alpha_bar_prev) * denoised + sqrt(1 - alpha_bar_prev) * noise` is
  `x = denoised + sigma_next * noise`; diffusers' boundary condition `denoised = c_out * x_0 + c_skip * x_t` is
  `LCMDenoiser`, which wraps the model's denoiser.
- TCD (`TCDScheduler.step`): the jump to `s = floor((1 - gamma) * t_next)` and re-noising to `t_next` are
  `x = x_0 + sigma_s * eps + sqrt(sigma_next^2 - sigma_s^2) * noise`. The last step ends, as diffusers does, on
  the sample at timestep 0, `x_s / sqrt(1 + sigma_s^2)`, not on the clean x_0.
- DDIM, eta 0 (`DDIMScheduler.step`): `x_prev = sqrt(alpha_bar_prev) * x_0 + sqrt(1 - alpha_bar_prev) * eps` is
  `x = x_0 + sigma_prev * eps`, which is also Euler's step on the probability-flow ODE (`EulerDiscreteScheduler.step`,
  where the sample already is k-diffusion's x). diffusers' DDIM lands on `t - train_steps // steps`, which the next
  step's timestep need not be (12 trailing steps: 916 -> 833, next UNet call at 832 on that same sample); the
  sample is then re-expressed at the next sigma, `x * sqrt(1 + sigma_next^2) / sqrt(1 + sigma_prev^2)`. Landing on
  `alpha_bar_0` (`set_alpha_to_one=False`) the last step ends, like TCD, on the timestep-0 sample.

Initial latent: diffusers' LCM, TCD and DDIM start from `x_T = z` at t = 999 (`init_noise_sigma` = 1), k-diffusion from
`x = z * sigma_max`, i.e. `x_T = z * sigma_max * sqrt(alpha_bar_T) = z * sqrt(1 - alpha_bar_T)` (0.9977 z for
Stable Diffusion). Start from `x = z * sqrt(1 + sigma_max^2)` (= `z / sqrt(alpha_bar_T)`, the WebUI's "SGM noise
multiplier") to reproduce diffusers exactly. `EulerDiscreteScheduler` with trailing spacing starts from
`init_noise_sigma = sigma_max`, k-diffusion's own `x = z * sigma_max`. For img2img, k-diffusion's `x_0 + sigma * noise` already is diffusers'
`add_noise(x_0, noise, t)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import trange

from .schedules import sigma_to_timestep, tcd_intermediate_timestep, timestep_to_sigma


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Appends trailing singleton dimensions to `x` until it has `target_dims` dimensions."""
    return x[(...,) + (None,) * (target_dims - x.ndim)]


def default_noise_sampler(x: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """k-diffusion's default: fresh standard normal noise shaped like `x` for every step."""
    return lambda sigma, sigma_next: torch.randn_like(x)


def boundary_condition_scalings(
    timestep: torch.Tensor, timestep_scaling: float = 10.0, sigma_data: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Consistency-model boundary condition `(c_skip, c_out)` (arXiv 2310.04378, eq. 9) at integer timestep(s).

    As diffusers' `LCMScheduler.get_scalings_for_boundary_condition_discrete`: with `t' = timestep * timestep_scaling`,
    `c_skip = sigma_data^2 / (t'^2 + sigma_data^2)` and `c_out = t' / sqrt(t'^2 + sigma_data^2)`, so that
    `c_skip(0) = 1`, `c_out(0) = 0`.
    """
    scaled_timestep = timestep * timestep_scaling
    c_skip = sigma_data**2 / (scaled_timestep**2 + sigma_data**2)
    c_out = scaled_timestep / (scaled_timestep**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


class LCMDenoiser(nn.Module):
    """Applies LCM's boundary condition to a k-diffusion denoiser, as `LCMScheduler.step` does to its x_0 estimate.

    Args:
        denoiser (`Callable`): `denoiser(x, sigma, **kwargs)` -> x_0 estimate, e.g. the WebUI's k-diffusion wrapper of
            the UNet. Attributes this class lacks (`sigmas`, `get_sigmas`, `inner_model`, ...) are read from it, so
            the wrapper can stand where the denoiser stood.
        alphas_cumprod (`torch.Tensor`): the model's `alpha_bar_t` for every training timestep, to map sigma to the
            integer timestep the boundary condition is defined on.
        timestep_scaling (`float`, defaults to 10.0), sigma_data (`float`, defaults to 0.5): as in diffusers.
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        alphas_cumprod: torch.Tensor,
        timestep_scaling: float = 10.0,
        sigma_data: float = 0.5,
    ):
        super().__init__()
        self.denoiser = denoiser
        self.alphas_cumprod = alphas_cumprod
        self.timestep_scaling = timestep_scaling
        self.sigma_data = sigma_data

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "denoiser":
                raise
            return getattr(self.denoiser, name)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        pred_original_sample = self.denoiser(x, sigma, **kwargs)
        # Scalings in >= float32: (10 t)^2 overflows float16.
        dtype = torch.promote_types(self.alphas_cumprod.dtype, torch.float32)
        alphas_cumprod = self.alphas_cumprod.to(x.device)
        timestep = sigma_to_timestep(sigma, alphas_cumprod).to(dtype)
        c_skip, c_out = boundary_condition_scalings(timestep, self.timestep_scaling, self.sigma_data)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=dtype)
        c_skip, c_out, c_in = (
            append_dims(c, x.ndim).to(x.dtype) for c in (c_skip, c_out, (1 + sigma**2) ** -0.5)
        )
        sample = c_in * x  # diffusers' x_t
        return c_out * pred_original_sample + c_skip * sample


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent Consistency Model multistep sampling (arXiv 2310.04378, LCM-LoRA arXiv 2311.05556)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_tcd(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    noise_sampler=None,
    gamma=0.3,
    alphas_cumprod=None,
):
    """Trajectory Consistency Distillation, strategic stochastic sampling (arXiv 2402.19159)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"TCD gamma (stochasticity) must be in [0, 1], got {gamma!r}.")
    # The schedule maps sigmas to the integer timesteps s lives on; an LCMDenoiser-like model may carry it.
    alphas_cumprod = getattr(model, "alphas_cumprod", None) if alphas_cumprod is None else alphas_cumprod
    if alphas_cumprod is None:
        raise ValueError(
            "sample_tcd needs the model's alphas_cumprod (pass alphas_cumprod=...) to find timesteps s."
        )
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    # 1. s = floor((1 - gamma) * t_next); the final sigma 0 is timestep 0, as diffusers' last prev_timestep.
    timesteps_s = tcd_intermediate_timestep(sigma_to_timestep(sigmas[1:], alphas_cumprod).cpu(), gamma)
    sigmas_s = timestep_to_sigma(timesteps_s, alphas_cumprod.cpu()).to(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        # 2. x_s: jump along the predicted noise down to s (diffusers' pred_noised_sample).
        eps = (x - denoised) / sigmas[i]
        x = denoised + sigmas_s[i] * eps
        if sigmas[i + 1] == 0:
            # diffusers ends on the timestep-0 sample itself, in its variance-preserving scaling.
            x = x / (1 + sigmas_s[i] ** 2).sqrt()
        elif gamma > 0:
            # 3. Re-noise from s back up to t_next.
            sigma_up = (sigmas[i + 1] ** 2 - sigmas_s[i] ** 2).clamp(min=0).sqrt()
            x = x + sigma_up * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, sigmas_prev=None):
    """Deterministic DDIM (eta 0, arXiv 2010.02502 eq. 12); with every landing on the next sigma, Euler's method.

    `sigmas_prev[i]` is the noise level step i lands on (`lib_lcm.schedules.ddim_prev_sigmas`); `None` lands on
    `sigmas[i + 1]`, which with a final sigma of 0 is k-diffusion's `sample_euler` (SDXL-Lightning's recipe).
    """
    extra_args = {} if extra_args is None else extra_args
    sigmas_prev = sigmas[1:] if sigmas_prev is None else sigmas_prev.to(sigmas)
    if len(sigmas_prev) != len(sigmas) - 1:
        raise ValueError(f"sample_ddim needs one landing sigma per step: got {len(sigmas_prev)} for {len(sigmas) - 1}.")
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        # 1. x_0 + sigma_prev * eps, eps the noise the model's x_0 implies.
        eps = (x - denoised) / sigmas[i]
        x = denoised + sigmas_prev[i] * eps
        if sigmas_prev[i] != sigmas[i + 1]:
            # 2. The same diffusers sample x / sqrt(1 + sigma_prev^2), in the coordinates of the next sigma.
            x = x * ((1 + sigmas[i + 1] ** 2) / (1 + sigmas_prev[i] ** 2)).sqrt()
    return x


def uncond_pass_is_redundant(conds_list, cond_scale: float) -> bool:
    """True when CFG cannot change the result: scale 1 and, per image, AND-weights summing to 1.

    `conds_list`: per image, its (cond row, AND-weight) pairs (the WebUI's `reconstruct_multicond_batch`).
    denoised = u + s * sum_i w_i (c_i - u) = (1 - s*sum w) u + s * sum w_i c_i, so u drops out iff s*sum w == 1.
    """
    if abs(cond_scale - 1.0) > 1e-9:
        return False
    return all(abs(sum(weight for _, weight in conds) - 1.0) < 1e-6 for conds in conds_list)


__all__ = [
    "LCMDenoiser",
    "append_dims",
    "boundary_condition_scalings",
    "default_noise_sampler",
    "sample_ddim",
    "sample_lcm",
    "sample_tcd",
    "uncond_pass_is_redundant",
]
