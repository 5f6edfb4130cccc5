"""Each few-step LoRA's recipe (lib_lcm.recipes) against the diffusers scheduler its model card runs, in float64.

For every recipe and step count: the UNet's timesteps, the sigmas, the first latent's scale, the sample before every
step and the final latent. The diffusers side is the card's scheduler built from Stable Diffusion's scheduler config
(`from_config`, as the cards do) and a text-to-image pipeline loop around it (`init_noise_sigma`,
`scale_model_input`, `step`). As in test_sampling, "stock" is diffusers as shipped (float32 tables: parity to
~1e-6) and "float64" the same scheduler with its tables in float64 (parity to round-off).
"""

from __future__ import annotations

import types

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)
from diffusers.schedulers import scheduling_euler_discrete

from lib_lcm.recipes import RECIPES, plan_sampling, recipe_timesteps
from lib_lcm.sampling import LCMDenoiser
from lib_lcm.schedules import ddim_prev_timesteps, img2img_tail, trailing_timesteps
from tests import test_sampling
from tests.test_sampling import F64, PRECISIONS, SHAPE, TOLERANCE, EpsDenoiser, ToyEps, seeded_noise

# stabilityai/stable-diffusion-xl-base-1.0's scheduler_config.json (SD 1.5's differs only in its class, PNDM):
# what `Scheduler.from_config(pipe.scheduler.config, ...)` on the model cards starts from.
SD_SCHEDULER_CONFIG = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
DMD2_TIMESTEPS = [999, 749, 499, 249]
tiny_unet = test_sampling.tiny_unet  # the seeded tiny Stable-Diffusion-shaped UNet fixture

# (recipe, steps): the step counts each family's files were distilled for, plus counts where DDIM's landing differs
# from the next timestep (3, 6, 12) and the guard-rail counts a user may pick.
CASES = (
    [("ddim-trailing", n) for n in (1, 2, 3, 4, 6, 8, 12)]
    + [("euler-trailing", n) for n in (1, 2, 3, 4, 8)]
    + [("lcm-trailing", n) for n in (2, 4, 8)]
    + [("tcd", n) for n in (2, 4, 8)]
    + [("tcd-eta1", n) for n in (1, 2, 4, 8)]
    + [("lcm", n) for n in (2, 4, 8)]
)


class Float64Torch(types.ModuleType):
    """torch, except that `torch.float32` is float64: EulerDiscreteScheduler.step casts the sample to float32."""

    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def reference_scheduler(recipe_key: str, precision: str, monkeypatch):
    """The model card's scheduler, built as the card builds it; "float64" puts its tables in float64."""
    cls, kwargs = {
        "ddim-trailing": (DDIMScheduler, {"timestep_spacing": "trailing"}),
        "euler-trailing": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
        "lcm-trailing": (LCMScheduler, {}),
        "lcm": (LCMScheduler, {}),
        "tcd": (TCDScheduler, {}),
        "tcd-eta1": (TCDScheduler, {}),
    }[recipe_key]
    scheduler = cls.from_config(SD_SCHEDULER_CONFIG, **kwargs)
    if precision == "float64":
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(F64)
        if hasattr(scheduler, "final_alpha_cumprod"):
            scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.to(F64)
        if isinstance(scheduler, LCMScheduler):
            scalings = scheduler.get_scalings_for_boundary_condition_discrete
            scheduler.get_scalings_for_boundary_condition_discrete = lambda t: scalings(t.to(F64))
        if isinstance(scheduler, EulerDiscreteScheduler):
            monkeypatch.setattr(scheduling_euler_discrete, "torch", Float64Torch("torch"))
    return scheduler


def set_reference_timesteps(scheduler, recipe_key, steps, precision, strength=1.0):
    if recipe_key == "lcm-trailing":
        # DMD2's card passes its list; at other counts the same spacing (trailing_timesteps is tested on its own).
        scheduler.set_timesteps(timesteps=DMD2_TIMESTEPS if steps == 4 else trailing_timesteps(steps))
    elif isinstance(scheduler, (LCMScheduler, TCDScheduler)):
        scheduler.set_timesteps(steps, strength=strength)
    else:
        scheduler.set_timesteps(steps)
    if isinstance(scheduler, EulerDiscreteScheduler) and precision == "float64":
        # diffusers rounds its sigma table to float32 (`astype(np.float32)`); the same formula in float64.
        table = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5
        scheduler.sigmas = torch.cat([table[scheduler.timesteps.long()], table.new_zeros(1)])
    return scheduler


def img2img_pipeline_timesteps(scheduler, steps, strength):
    """`StableDiffusionXLImg2ImgPipeline.get_timesteps` (diffusers 0.39), transcribed: the pipeline class needs
    transformers, which the tests do not install. It keeps the schedule's tail and starts the scheduler there."""
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return scheduler.timesteps[t_start * scheduler.order:], steps - t_start


def diffusers_pipeline_loop(scheduler, eps_model, latents, seed, eta=None, timesteps=None):
    """A diffusers text-to-image (or, given `timesteps`, img2img) loop: returns the latents before every step and
    the final latents (what the pipeline decodes)."""
    g = torch.Generator().manual_seed(seed)
    step_kw = {"generator": g, "return_dict": False} | ({} if eta is None else {"eta": eta})
    before = []
    for t in scheduler.timesteps if timesteps is None else timesteps:
        before.append(latents)
        model_input = scheduler.scale_model_input(latents, t)
        latents = scheduler.step(eps_model(model_input, t), t, latents, **step_kw)[0]
    return before, latents


def diffusers_coordinates(recipe, x, sigma):
    """Our k-diffusion x as the sample diffusers holds: Euler's is x itself, the others' x / sqrt(1 + sigma^2)."""
    return x if recipe.start_at_sigma_max else x / (1 + sigma**2) ** 0.5


@pytest.fixture(scope="module")
def toy():
    alphas_cumprod = LCMScheduler.from_config(SD_SCHEDULER_CONFIG).alphas_cumprod.to(F64)
    eps = ToyEps(alphas_cumprod)
    context = torch.randn(SHAPE[:2], generator=torch.Generator().manual_seed(1), dtype=F64)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=F64)
    return types.SimpleNamespace(
        alphas_cumprod=alphas_cumprod,
        eps_model=lambda x, t: eps(x, torch.as_tensor(t).long(), context),
        denoiser=EpsDenoiser(eps, alphas_cumprod),
        context=context,
        z=z,
    )


def run_ours(toy, plan, x, seed=3):
    """Our sampler on `plan` from k-diffusion start `x`: the x before every step and the final x."""
    recipe = plan.recipe
    model = LCMDenoiser(toy.denoiser, toy.alphas_cumprod) if recipe.boundary_condition else toy.denoiser
    extra = plan.sampler_kwargs()
    if recipe.sampler == "tcd":
        extra["alphas_cumprod"] = toy.alphas_cumprod
    if recipe.sampler != "ddim":
        extra["noise_sampler"] = seeded_noise(seed)
    seen = []
    out = recipe.sample(model, x, plan.sigmas, {"context": toy.context}, seen.append, True, **extra)
    return [c["x"] for c in seen], out


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("recipe_key", "steps"), CASES)
def test_recipe_matches_the_model_cards_scheduler(toy, recipe_key, steps, precision, monkeypatch):
    recipe = RECIPES[recipe_key]
    tolerance = TOLERANCE[precision]
    scheduler = reference_scheduler(recipe_key, precision, monkeypatch)
    set_reference_timesteps(scheduler, recipe_key, steps, precision)
    plan = plan_sampling(recipe, toy.alphas_cumprod, steps)

    # 1. The UNet's timesteps.
    assert list(plan.timesteps) == scheduler.timesteps.long().tolist()
    # 2. The sigmas: Euler's own table, the others' alpha_bar at each timestep (and DDIM's landings).
    alphas_cumprod = scheduler.alphas_cumprod.to(F64)
    if isinstance(scheduler, EulerDiscreteScheduler):
        torch.testing.assert_close(plan.sigmas, scheduler.sigmas.to(F64), **tolerance)
    else:
        alpha_bar = alphas_cumprod[scheduler.timesteps.long()]
        torch.testing.assert_close(plan.sigmas[:-1], ((1 - alpha_bar) / alpha_bar) ** 0.5, **tolerance)
    if recipe.ddim_landing:
        landing = [alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod.to(F64)
                   for t in ddim_prev_timesteps(plan.timesteps, steps)]
        alpha_bar_prev = torch.stack(landing)
        torch.testing.assert_close(plan.sigmas_prev, ((1 - alpha_bar_prev) / alpha_bar_prev) ** 0.5, **tolerance)
    # 3. The first latent: ours, in diffusers' coordinates, is z * init_noise_sigma.
    x = toy.z * plan.start_scale()
    torch.testing.assert_close(
        diffusers_coordinates(recipe, x, plan.sigmas[0]), toy.z * float(scheduler.init_noise_sigma), **tolerance
    )
    # 4. Every update and the final latent, from diffusers' own start.
    reference_before, reference_final = diffusers_pipeline_loop(
        scheduler, toy.eps_model, toy.z * scheduler.init_noise_sigma, seed=3, eta=recipe.gamma
    )
    ours_before, ours_final = run_ours(toy, plan, x)
    assert len(ours_before) == len(reference_before) == steps
    for sample, sigma, reference in zip(ours_before, plan.sigmas[:-1], reference_before, strict=True):
        torch.testing.assert_close(diffusers_coordinates(recipe, sample, sigma), reference, **tolerance)
    torch.testing.assert_close(ours_final, reference_final, **tolerance)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    ("recipe_key", "steps", "strength"),
    [("ddim-trailing", 4, 0.5), ("ddim-trailing", 12, 0.6), ("euler-trailing", 4, 0.75),
     ("euler-trailing", 8, 0.3), ("lcm-trailing", 4, 0.5)],
)
def test_trailing_img2img_is_the_img2img_pipelines_tail(toy, recipe_key, steps, strength, precision, monkeypatch):
    """diffusers' SDXL img2img pipeline: `get_timesteps` keeps the schedule's tail, `add_noise` starts there."""
    recipe = RECIPES[recipe_key]
    scheduler = reference_scheduler(recipe_key, precision, monkeypatch)
    set_reference_timesteps(scheduler, recipe_key, steps, precision)
    timesteps, count = img2img_pipeline_timesteps(scheduler, steps, strength)
    image = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=F64)
    start = scheduler.add_noise(image, toy.z, timesteps[:1])
    _, reference = diffusers_pipeline_loop(scheduler, toy.eps_model, start, seed=3, timesteps=timesteps)

    plan = plan_sampling(recipe, toy.alphas_cumprod, steps, strength)
    assert list(plan.timesteps) == timesteps.long().tolist() and len(plan.timesteps) == count
    x = image + plan.sigmas[0] * toy.z  # k-diffusion's img2img start, diffusers' add_noise
    _, ours = run_ours(toy, plan, x)
    torch.testing.assert_close(ours, reference, **TOLERANCE[precision])


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 6, 8, 12, 16, 25, 50, 60, 100, 1000])
def test_trailing_timesteps_match_ddim_and_euler(steps):
    ddim = DDIMScheduler.from_config(SD_SCHEDULER_CONFIG, timestep_spacing="trailing")
    euler = EulerDiscreteScheduler.from_config(SD_SCHEDULER_CONFIG, timestep_spacing="trailing")
    ddim.set_timesteps(steps)
    euler.set_timesteps(steps)
    assert trailing_timesteps(steps) == ddim.timesteps.tolist() == euler.timesteps.long().tolist()


def test_trailing_timesteps_refuse_a_count_diffusers_would_not_run():
    ddim = DDIMScheduler.from_config(SD_SCHEDULER_CONFIG, timestep_spacing="trailing")
    ddim.set_timesteps(61)
    assert len(ddim.timesteps) == 62  # diffusers' float spacing: one step more than asked
    with pytest.raises(ValueError, match="62 timesteps for 61 steps; use 60 or 62 steps"):
        trailing_timesteps(61)
    with pytest.raises(ValueError, match="steps must be an integer from 1 to 1000"):
        trailing_timesteps(0)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [(4, [749, 499, 249, -1]), (12, [916, 833, 749, 666, 583, 499, 416, 333, 249, 166, 83, -1]),
     (6, [833, 666, 500, 333, 166, 0])],
)
def test_ddim_landings_are_t_minus_train_steps_over_n(steps, expected):
    assert ddim_prev_timesteps(trailing_timesteps(steps), steps) == expected


def test_known_recipe_timesteps():
    assert recipe_timesteps(RECIPES["euler-trailing"], 4) == ([999, 749, 499, 249], None)
    assert recipe_timesteps(RECIPES["lcm-trailing"], 4) == (DMD2_TIMESTEPS, None)
    assert recipe_timesteps(RECIPES["lcm"], 4) == ([999, 759, 499, 259], None)
    assert recipe_timesteps(RECIPES["ddim-trailing"], 4, strength=0.5) == ([499, 249], None)
    steps, warning = recipe_timesteps(RECIPES["tcd"], 8, strength=0.1)
    assert steps == [99, 79, 59, 39, 19] and "at most 5 LCM steps" in warning


def test_img2img_tail_names_the_strength_that_keeps_a_step():
    assert img2img_tail([999, 749, 499, 249], 1.0) == [999, 749, 499, 249]
    assert img2img_tail([999, 749, 499, 249], 0.25) == [249]
    with pytest.raises(ValueError, match="keeps none of the 4 steps; raise the denoising strength to at least 0.25"):
        img2img_tail([999, 749, 499, 249], 0.2)


def test_plan_start_scales():
    alphas_cumprod = LCMScheduler().alphas_cumprod.to(F64)
    euler, ddim = (plan_sampling(key, alphas_cumprod, 4) for key in ("euler-trailing", "ddim-trailing"))
    sigma_max = euler.sigmas[0]
    assert euler.start_scale() == sigma_max  # SDXL-Lightning: z * sigma_max, not z * sqrt(sigma_max^2 + 1)
    assert ddim.start_scale() == (1 + sigma_max**2).sqrt()
    assert ddim.sigmas_prev[-1] == ((1 - alphas_cumprod[0]) / alphas_cumprod[0]).sqrt()  # ends on alpha_bar_0
    assert abs(float(ddim.sigmas_prev[-1]) - 0.0292) < 1e-4
    assert euler.sigmas_prev is None and euler.sampler_kwargs() == {}
    assert plan_sampling("tcd-eta1", alphas_cumprod, 1).sampler_kwargs() == {"gamma": 1.0}
    assert plan_sampling("tcd", alphas_cumprod, 4).sampler_kwargs(gamma=0.5) == {"gamma": 0.5}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("steps", "guidance_scale"), [(8, 5.0), (12, 5.0), (12, 8.0)])
def test_hyper_cfg_with_a_unet_and_cfg_matches_diffusers(tiny_unet, steps, guidance_scale, precision, monkeypatch):
    """Hyper-SD's CFG LoRAs: DDIM trailing with guidance 5-8 on eps (diffusers) vs on the denoised (the WebUI)."""
    alphas_cumprod = LCMScheduler().alphas_cumprod.to(F64)
    g = torch.Generator().manual_seed(7)
    cond, uncond = (torch.randn(SHAPE[0], 3, 8, generator=g, dtype=F64) for _ in range(2))
    z = torch.randn(SHAPE, generator=g, dtype=F64)

    def unet_eps(sample, timestep, context):
        return tiny_unet(sample, timestep, encoder_hidden_states=context).sample

    def diffusers_cfg_eps(latents, t):
        eps_uncond, eps_cond = unet_eps(torch.cat([latents] * 2), t, torch.cat([uncond, cond])).chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    denoiser = EpsDenoiser(unet_eps, alphas_cumprod)

    def webui_cfg_denoiser(x, sigma):
        both = denoiser(torch.cat([x] * 2), torch.cat([sigma] * 2), context=torch.cat([uncond, cond]))
        d_uncond, d_cond = both.chunk(2)
        return d_uncond + guidance_scale * (d_cond - d_uncond)

    scheduler = reference_scheduler("ddim-trailing", precision, monkeypatch)
    scheduler.set_timesteps(steps)
    plan = plan_sampling("ddim-trailing", alphas_cumprod, steps)
    with torch.no_grad():
        _, reference = diffusers_pipeline_loop(scheduler, diffusers_cfg_eps, z, seed=3)
        ours = plan.recipe.sample(webui_cfg_denoiser, z * plan.start_scale(), plan.sigmas, disable=True,
                                  **plan.sampler_kwargs())
    torch.testing.assert_close(ours, reference, **TOLERANCE[precision])

