"""lib_lcm.sampling against diffusers' LCMScheduler.step / TCDScheduler.step loops, in float64.

Both sides get the same eps-model and the same noise draws (identically seeded CPU generators). Each parity test runs
against diffusers as shipped ("stock", whose float32 scalars bound parity at ~1e-6) and against the same scheduler
with its scalars in float64 ("float64", parity to round-off), see TOLERANCE.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import LCMScheduler, TCDScheduler, UNet2DConditionModel

from lib_lcm.sampling import LCMDenoiser, boundary_condition_scalings, sample_lcm, sample_tcd
from lib_lcm.schedules import lcm_sigmas, sigma_to_timestep, tcd_sigmas

F64 = torch.float64
SHAPE = (2, 4, 8, 8)
PRECISIONS = ["stock", "float64"]
# Stock diffusers rounds its per-step scalars (alpha_bar, c_skip, c_out, ...) to float32: measured max |diff|
# 1.1e-6 on O(1) latents. With those scalars in float64 the loops agree to round-off: measured max 6e-15.
# stock: float32 round-off, so relative as well as absolute (the tiny UNet's latents reach ~57, where 1e-5 is
# ~3 float32 ulps and the last bits differ between CPUs' kernels: 2e-5 = 3.7e-7 relative seen on an AMD EPYC)
TOLERANCE = {"stock": {"atol": 1e-5, "rtol": 2e-6}, "float64": {"atol": 1e-12, "rtol": 0}}


class ToyEps:
    """A fixed nonlinear eps-prediction of (x_t, t, context).

    The optimal eps for unit-variance data, `sqrt(1 - alpha_bar_t) x_t`, plus a tanh of channel-mixed x_t with a t-
    and context-dependent bias, so x_0 estimates stay O(1) like a real model's.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, channels: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.alphas_cumprod = alphas_cumprod
        self.mix = torch.randn(channels, channels, generator=g, dtype=F64) / channels**0.5
        self.bias = torch.randn(channels, 1, 1, generator=g, dtype=F64)

    def __call__(self, sample, timestep, context):
        timestep = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        alpha_bar = self.alphas_cumprod[timestep].to(F64)[:, None, None, None]
        t = timestep.to(F64)[:, None, None, None] / 1000
        h = torch.einsum("ij,bjhw->bihw", self.mix, sample) * (1 + t)
        return (1 - alpha_bar) ** 0.5 * sample + 0.1 * torch.tanh(
            h + self.bias * torch.cos(3 * t) + context[:, :, None, None]
        )


class EpsDenoiser:
    """eps-model -> k-diffusion denoiser, as k-diffusion's DiscreteEpsDDPMDenoiser with integer timesteps."""

    def __init__(self, eps_model, alphas_cumprod):
        self.eps_model, self.alphas_cumprod = eps_model, alphas_cumprod

    def __call__(self, x, sigma, **kwargs):
        c_in = (1 + sigma**2) ** -0.5
        eps = self.eps_model(
            x * c_in[:, None, None, None], sigma_to_timestep(sigma, self.alphas_cumprod), **kwargs
        )
        return x - sigma[:, None, None, None] * eps


def seeded_noise(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(SHAPE, generator=g, dtype=F64)


def diffusers_loop(
    scheduler, eps_model, latents, steps, seed, strength=1.0, original_inference_steps=None, **step_kw
):
    """The loop of diffusers' LCM / TCD pipelines: returns LCM's last `denoised`, TCD's last `prev_sample`."""
    g = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps, original_inference_steps=original_inference_steps, strength=strength)
    for t in scheduler.timesteps:
        out = scheduler.step(eps_model(latents, t), t, latents, generator=g, return_dict=False, **step_kw)
        latents = out[0]
    return out[1] if isinstance(scheduler, LCMScheduler) else latents


def reference_scheduler(kind: str, precision: str):
    """diffusers' scheduler as shipped ("stock"), or with its tables and boundary scalings in float64 ("float64")."""
    scheduler = LCMScheduler() if kind == "lcm" else TCDScheduler()
    if precision == "float64":
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(F64)
        scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.to(F64)
        if kind == "lcm":
            scalings = scheduler.get_scalings_for_boundary_condition_discrete
            scheduler.get_scalings_for_boundary_condition_discrete = lambda t: scalings(t.to(F64))
    return scheduler


@pytest.fixture(scope="module")
def setup():
    alphas_cumprod = LCMScheduler().alphas_cumprod.to(F64)
    toy = ToyEps(alphas_cumprod)
    context = torch.randn(SHAPE[:2], generator=torch.Generator().manual_seed(1), dtype=F64)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=F64)
    return alphas_cumprod, (lambda x, t: toy(x, t, context)), EpsDenoiser(toy, alphas_cumprod), context, z


def diffusers_start(sigma_max):
    """k-diffusion start x = z * sqrt(1 + sigma_max^2) is diffusers' x_T = z."""
    return (1 + sigma_max**2) ** 0.5


def run_lcm(setup, steps, x_scale=diffusers_start, strength=1.0, seed=3):
    alphas_cumprod, _, denoiser, context, z = setup
    sigmas = lcm_sigmas(alphas_cumprod, steps, strength)
    model = LCMDenoiser(denoiser, alphas_cumprod)
    x = z * x_scale(sigmas[0])
    return sample_lcm(model, x, sigmas, {"context": context}, disable=True, noise_sampler=seeded_noise(seed))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_sample_lcm_matches_diffusers(setup, steps, precision):
    _, eps_model, _, _, z = setup
    reference = diffusers_loop(reference_scheduler("lcm", precision), eps_model, z, steps, seed=3)
    torch.testing.assert_close(run_lcm(setup, steps), reference, **TOLERANCE[precision])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_sample_lcm_img2img_matches_diffusers(setup, precision):
    alphas_cumprod, eps_model, denoiser, context, z = setup
    image = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=F64)
    scheduler = reference_scheduler("lcm", precision)
    scheduler.set_timesteps(4, strength=0.5)
    start = scheduler.add_noise(image, z, scheduler.timesteps[:1])
    reference = diffusers_loop(scheduler, eps_model, start, 4, seed=3, strength=0.5)

    sigmas = lcm_sigmas(alphas_cumprod, 4, strength=0.5)
    x = image + sigmas[0] * z  # k-diffusion's img2img start is diffusers' add_noise
    model = LCMDenoiser(denoiser, alphas_cumprod)
    ours = sample_lcm(model, x, sigmas, {"context": context}, disable=True, noise_sampler=seeded_noise(3))
    torch.testing.assert_close(ours, reference, **TOLERANCE[precision])


def test_k_diffusion_start_is_diffusers_start_scaled_by_sqrt_one_minus_alpha_bar(setup):
    alphas_cumprod, eps_model, _, _, z = setup
    alpha_bar_T = alphas_cumprod[999]
    ours = run_lcm(setup, 4, x_scale=lambda sigma_max: sigma_max)  # the WebUI's x = z * sigma_max
    # x = z sigma_max is x_T = z sigma_max sqrt(alpha_bar_T) = z sqrt(1 - alpha_bar_T) for diffusers.
    scaled_start = z * (1 - alpha_bar_T) ** 0.5
    predicted = diffusers_loop(reference_scheduler("lcm", "float64"), eps_model, scaled_start, 4, seed=3)
    torch.testing.assert_close(ours, predicted, **TOLERANCE["float64"])
    from_z = diffusers_loop(reference_scheduler("lcm", "float64"), eps_model, z, 4, seed=3)
    assert (ours - from_z).abs().max() > 1e-5  # a real difference, far above the float64 tolerance


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.3, 0.5, 1.0])
@pytest.mark.parametrize(
    ("steps", "original_inference_steps"), [(1, None), (2, None), (4, None), (8, None), (6, 50)]
)
def test_sample_tcd_matches_diffusers(setup, gamma, steps, original_inference_steps, precision):
    alphas_cumprod, eps_model, denoiser, context, z = setup
    scheduler = reference_scheduler("tcd", precision)
    reference = diffusers_loop(
        scheduler, eps_model, z, steps, seed=3, original_inference_steps=original_inference_steps, eta=gamma
    )
    sigmas = tcd_sigmas(alphas_cumprod, steps, original_inference_steps=original_inference_steps)
    x = z * diffusers_start(sigmas[0])
    noise = seeded_noise(3)
    ours = sample_tcd(
        denoiser, x, sigmas, {"context": context}, disable=True, noise_sampler=noise, gamma=gamma
    )
    torch.testing.assert_close(ours, reference, **TOLERANCE[precision])


def test_tcd_reads_alphas_cumprod_from_the_model(setup):
    alphas_cumprod, _, denoiser, context, z = setup
    sigmas = tcd_sigmas(alphas_cumprod, 4)

    def run(**kwargs):
        noise = seeded_noise(3)
        return sample_tcd(
            denoiser, z, sigmas, {"context": context}, disable=True, noise_sampler=noise, **kwargs
        )

    assert denoiser.alphas_cumprod is alphas_cumprod
    assert torch.equal(run(), run(alphas_cumprod=alphas_cumprod))
    assert not torch.equal(run(), run(alphas_cumprod=alphas_cumprod.flip(0)))


def test_sample_tcd_bad_input(setup):
    alphas_cumprod, _, denoiser, _, z = setup
    sigmas = tcd_sigmas(alphas_cumprod, 2)
    with pytest.raises(ValueError, match=r"gamma .* \[0, 1\]"):
        sample_tcd(denoiser, z, sigmas, gamma=1.5)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        sample_tcd(lambda x, sigma: x, z, sigmas)


def test_boundary_condition_scalings_match_diffusers():
    scheduler = LCMScheduler()
    timesteps = torch.arange(1000)
    c_skip, c_out = boundary_condition_scalings(timesteps.to(F64))
    ref_skip, ref_out = scheduler.get_scalings_for_boundary_condition_discrete(timesteps)
    torch.testing.assert_close(c_skip, ref_skip.to(F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(c_out, ref_out.to(F64), rtol=1e-6, atol=0)
    assert (c_skip[0], c_out[0]) == (1.0, 0.0)  # at t = 0 the consistency function is the identity


def test_lcm_denoiser_at_timestep_zero_returns_the_sample(setup):
    alphas_cumprod = setup[0]
    sigma0 = ((1 - alphas_cumprod[0]) / alphas_cumprod[0]).sqrt()
    x = torch.randn(SHAPE, dtype=F64)
    out = LCMDenoiser(lambda x, sigma: torch.zeros_like(x), alphas_cumprod)(x, sigma0.expand(2))
    torch.testing.assert_close(out, x / (1 + sigma0**2).sqrt(), atol=1e-15, rtol=0)  # diffusers' x_t


def test_lcm_denoiser_float16_has_no_overflow(setup):
    alphas_cumprod = setup[0].float()
    x = torch.randn(SHAPE).half()
    out = LCMDenoiser(lambda x, sigma: x, alphas_cumprod)(x, torch.full((2,), 14.6146))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_lcm_denoiser_stands_in_for_the_wrapped_denoiser():
    class WebUIDenoiser(torch.nn.Module):
        sigma_max = 14.6146

        def forward(self, x, sigma):
            return x

    inner = WebUIDenoiser()
    wrapper = LCMDenoiser(inner, torch.ones(10))
    assert wrapper.denoiser is inner and wrapper.sigma_max == 14.6146
    assert list(wrapper.children()) == [inner]
    with pytest.raises(AttributeError):
        _ = wrapper.no_such_attribute


@pytest.mark.parametrize("sampler", ["lcm", "tcd"])
def test_callback_and_noise_calls(setup, sampler, capsys):
    alphas_cumprod, _, denoiser, context, z = setup
    steps = 4
    calls, noise_calls = [], []

    def noise_sampler(sigma, sigma_next):
        noise_calls.append((float(sigma), float(sigma_next)))
        return torch.zeros(SHAPE, dtype=F64)

    sigmas = lcm_sigmas(alphas_cumprod, steps)
    kwargs = {"alphas_cumprod": alphas_cumprod} if sampler == "tcd" else {}
    sample = sample_lcm if sampler == "lcm" else sample_tcd
    sample(denoiser, z, sigmas, {"context": context}, calls.append, True, noise_sampler, **kwargs)

    assert [c["i"] for c in calls] == list(range(steps))
    assert all(set(c) == {"x", "i", "sigma", "sigma_hat", "denoised"} for c in calls)
    assert [float(c["sigma"]) for c in calls] == sigmas[:-1].tolist()
    assert all(c["denoised"].shape == SHAPE for c in calls)
    # No noise after the last step (sigma_next = 0).
    assert noise_calls == list(zip(sigmas[:-2].tolist(), sigmas[1:-1].tolist(), strict=True))
    assert capsys.readouterr().err == ""


def test_progress_bar_only_when_enabled(setup, capsys):
    alphas_cumprod, _, denoiser, context, z = setup
    sigmas = lcm_sigmas(alphas_cumprod, 2)
    sample_lcm(denoiser, z, sigmas, {"context": context}, disable=False)
    assert "2/2" in capsys.readouterr().err
    sample_lcm(denoiser, z, sigmas, {"context": context}, disable=True)
    assert capsys.readouterr().err == ""


def test_tcd_gamma_zero_is_deterministic(setup):
    alphas_cumprod, _, denoiser, context, z = setup
    sigmas = tcd_sigmas(alphas_cumprod, 4)

    def no_noise(sigma, sigma_next):
        raise AssertionError("gamma = 0 draws no noise")

    sample_tcd(
        denoiser,
        z,
        sigmas,
        {"context": context},
        None,
        True,
        no_noise,
        gamma=0.0,
        alphas_cumprod=alphas_cumprod,
    )


def test_default_noise_is_torch_randn_like(setup):
    alphas_cumprod, _, denoiser, context, z = setup
    sigmas = lcm_sigmas(alphas_cumprod, 3)
    torch.manual_seed(5)
    default = sample_lcm(denoiser, z, sigmas, {"context": context}, disable=True)
    torch.manual_seed(5)
    explicit = sample_lcm(
        denoiser,
        z,
        sigmas,
        {"context": context},
        disable=True,
        noise_sampler=lambda s, sn: torch.randn_like(z),
    )
    assert torch.equal(default, explicit)


@pytest.fixture(scope="module")
def tiny_unet():
    """A seeded, randomly initialised Stable-Diffusion-shaped UNet, small enough for CPU tests."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(8, 16),
            layers_per_block=1,
            cross_attention_dim=8,
            norm_num_groups=4,
            attention_head_dim=2,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        )
    return unet.to(F64).eval()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("kind", "steps"), [("lcm", 4), ("lcm", 1), ("tcd", 4), ("tcd", 8)])
def test_unet_pipeline_with_cfg_matches_diffusers(tiny_unet, kind, steps, precision):
    """diffusers' pipeline loop (CFG on eps) vs the WebUI's arrangement (CFG on the denoised of LCMDenoiser(unet))."""
    alphas_cumprod = LCMScheduler().alphas_cumprod.to(F64)
    g = torch.Generator().manual_seed(7)
    cond, uncond = (torch.randn(SHAPE[0], 3, 8, generator=g, dtype=F64) for _ in range(2))
    z = torch.randn(SHAPE, generator=g, dtype=F64)
    guidance_scale = 1.5

    def unet_eps(sample, timestep, context):
        return tiny_unet(sample, timestep, encoder_hidden_states=context).sample

    with torch.no_grad():
        assert not torch.allclose(unet_eps(z, 999, cond), unet_eps(z, 999, uncond))  # CFG has an effect

    def diffusers_cfg_eps(latents, t):
        eps_uncond, eps_cond = unet_eps(torch.cat([latents] * 2), t, torch.cat([uncond, cond])).chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    denoiser = EpsDenoiser(unet_eps, alphas_cumprod)
    if kind == "lcm":
        denoiser = LCMDenoiser(denoiser, alphas_cumprod)

    def webui_cfg_denoiser(x, sigma):
        d_uncond, d_cond = denoiser(
            torch.cat([x] * 2), torch.cat([sigma] * 2), context=torch.cat([uncond, cond])
        ).chunk(2)
        return d_uncond + guidance_scale * (d_cond - d_uncond)

    step_kw = {"eta": 0.3} if kind == "tcd" else {}
    with torch.no_grad():
        reference = diffusers_loop(
            reference_scheduler(kind, precision), diffusers_cfg_eps, z, steps, seed=3, **step_kw
        )
    sigmas = (lcm_sigmas if kind == "lcm" else tcd_sigmas)(alphas_cumprod, steps)
    x = z * diffusers_start(sigmas[0])
    extra = {"gamma": 0.3, "alphas_cumprod": alphas_cumprod} if kind == "tcd" else {}
    sample = sample_lcm if kind == "lcm" else sample_tcd
    ours = sample(webui_cfg_denoiser, x, sigmas, disable=True, noise_sampler=seeded_noise(3), **extra)
    torch.testing.assert_close(ours, reference, **TOLERANCE[precision])
