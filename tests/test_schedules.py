"""lib_lcm.schedules against diffusers' LCMScheduler / TCDScheduler.set_timesteps (diffusers is test-only)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import LCMScheduler, TCDScheduler
from hypothesis import given
from hypothesis import strategies as st

from lib_lcm.schedules import (
    LCM_ORIGINAL_STEPS,
    lcm_sigmas,
    lcm_timesteps,
    scaled_linear_alphas_cumprod,
    sigma_to_timestep,
    tcd_intermediate_timestep,
    tcd_sigmas,
    tcd_timesteps,
    timestep_to_sigma,
    training_sigmas,
)

STRENGTHS = [1.0, 0.9, 0.75, 0.5, 0.3, 0.1]
ALPHAS_CUMPROD = scaled_linear_alphas_cumprod()


def reference_timesteps(scheduler, steps, strength, original_inference_steps=None):
    """diffusers' timesteps, or None where diffusers refuses the request (whatever it raises)."""
    try:
        scheduler.set_timesteps(steps, original_inference_steps=original_inference_steps, strength=strength)
    except Exception:
        return None
    return scheduler.timesteps.tolist()


def assert_same_as_reference(ours, reference, *args):
    if reference is None:
        with pytest.raises(ValueError):
            ours(*args)
    else:
        assert ours(*args) == reference


@pytest.mark.parametrize(
    ("steps", "strength", "expected"),
    [
        (4, 1.0, [999, 759, 499, 259]),
        (2, 1.0, [999, 499]),
        (8, 1.0, [999, 879, 759, 639, 499, 379, 259, 139]),
        (4, 0.5, [499, 379, 259, 139]),
        (1, 1.0, [999]),
    ],
)
def test_known_lcm_timesteps(steps, strength, expected):
    assert lcm_timesteps(steps, strength) == expected
    assert tcd_timesteps(steps, strength) == expected


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("original_steps", [50, 30, 8, 1000])
def test_lcm_timesteps_match_diffusers(strength, original_steps):
    scheduler = LCMScheduler()
    outcomes = []
    for steps in [*range(0, 61), 100, 999, 1000, 1001]:
        reference = reference_timesteps(scheduler, steps, strength, original_steps)
        outcomes.append(reference is None)
        assert_same_as_reference(lcm_timesteps, reference, steps, strength, original_steps)
    # Both valid and refused requests were compared (all refused only where the grid is empty).
    assert any(outcomes) and all(outcomes) == (int(original_steps * strength) == 0)


def test_lcm_original_steps_beyond_training_is_refused_like_diffusers():
    assert reference_timesteps(LCMScheduler(), 4, 1.0, 1001) is None
    with pytest.raises(ValueError, match="original_steps"):
        lcm_timesteps(4, 1.0, 1001)


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("original_inference_steps", [None, 50, 8, 1000])
def test_tcd_timesteps_match_diffusers(strength, original_inference_steps):
    # TCD's gamma (eta) only enters TCDScheduler.step, never set_timesteps.
    scheduler = TCDScheduler()
    outcomes = []
    for steps in [*range(0, 61), 99, 100, 101, 999, 1000, 1001]:
        reference = reference_timesteps(scheduler, steps, strength, original_inference_steps)
        outcomes.append(reference is None)
        assert_same_as_reference(tcd_timesteps, reference, steps, strength, original_inference_steps)
    assert any(outcomes) and not all(outcomes)


def test_tcd_customised_grid_differs_from_distillation_grid():
    assert tcd_timesteps(4, original_inference_steps=None) == [999, 759, 499, 259]
    assert tcd_timesteps(4, original_inference_steps=50) == [999, 749, 499, 249]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "at least 1"),
        ({"steps": -3}, "at least 1"),
        ({"steps": 2.5}, "at least 1"),
        ({"steps": True}, "at least 1"),
        ({"steps": 4, "strength": 0.0}, r"\(0, 1\]"),
        ({"steps": 4, "strength": -0.5}, r"\(0, 1\]"),
        ({"steps": 4, "strength": 1.5}, r"\(0, 1\]"),
        ({"steps": 4, "strength": math.nan}, r"\(0, 1\]"),
        ({"steps": 4, "original_steps": 0}, "original_steps"),
        ({"steps": 51}, "use at most 50 steps"),
        (
            {"steps": 4, "strength": 0.05},
            "use at most 2 steps or raise the denoising strength to at least 0.08",
        ),
    ],
)
def test_lcm_bad_requests_get_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lcm_timesteps(**kwargs)


def test_tcd_bad_requests_get_clear_errors():
    with pytest.raises(ValueError, match="use at most 8 steps or raise original_inference_steps"):
        tcd_timesteps(9, original_inference_steps=8)
    with pytest.raises(ValueError, match="original_inference_steps must be an integer"):
        tcd_timesteps(4, original_inference_steps=50.0)
    with pytest.raises(
        ValueError, match=r"use at most 100 steps or raise the denoising strength to at least 0.2"
    ):
        tcd_timesteps(200, strength=0.1, original_inference_steps=1000)


def test_scaled_linear_alphas_cumprod_is_diffusers_schedule():
    assert torch.equal(ALPHAS_CUMPROD, LCMScheduler().alphas_cumprod)
    assert torch.equal(ALPHAS_CUMPROD, TCDScheduler().alphas_cumprod)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigma_to_timestep_inverts_timestep_to_sigma(dtype):
    alphas_cumprod = ALPHAS_CUMPROD.to(dtype)
    timesteps = torch.arange(1000)
    sigmas = timestep_to_sigma(timesteps, alphas_cumprod)
    assert torch.equal(sigma_to_timestep(sigmas, alphas_cumprod), timesteps)
    # Off-table sigmas go to the nearest timestep; sigma 0 (the end of every schedule) is timestep 0.
    assert torch.equal(sigma_to_timestep(sigmas * 1.001, alphas_cumprod), timesteps)
    assert sigma_to_timestep(torch.tensor([0.0, 1e6]), alphas_cumprod).tolist() == [0, 999]
    assert sigma_to_timestep(sigmas.reshape(10, 100), alphas_cumprod).shape == (10, 100)


def test_training_sigmas_from_float16_schedule_stay_exact_enough():
    # float16 cannot resolve 1 - alpha_bar near t = 0; the sigmas are computed in float32 instead.
    half = ALPHAS_CUMPROD.half()
    assert training_sigmas(half).dtype == torch.float32
    assert torch.equal(sigma_to_timestep(training_sigmas(ALPHAS_CUMPROD), half), torch.arange(1000))


def test_sigmas_are_the_noise_levels_of_the_timesteps():
    alphas_cumprod = ALPHAS_CUMPROD.double()
    for sigmas, timesteps in [
        (lcm_sigmas(alphas_cumprod, 4), lcm_timesteps(4)),
        (lcm_sigmas(alphas_cumprod, 3, 0.6), lcm_timesteps(3, 0.6)),
        (
            tcd_sigmas(alphas_cumprod, 6, original_inference_steps=50),
            tcd_timesteps(6, original_inference_steps=50),
        ),
    ]:
        assert sigmas[-1] == 0 and len(sigmas) == len(timesteps) + 1
        # x_t = x / sqrt(1 + sigma^2) = sqrt(alpha_bar_t) x_0 + ...: 1 / (1 + sigma^2) is alpha_bar_t.
        torch.testing.assert_close(1 / (1 + sigmas[:-1] ** 2), alphas_cumprod[timesteps], rtol=1e-12, atol=0)


def test_sigmas_follow_the_models_schedule_length():
    short = scaled_linear_alphas_cumprod(train_steps=500)
    assert sigma_to_timestep(lcm_sigmas(short, 2)[:-1], short).tolist() == [499, 249]


def test_tcd_intermediate_timestep():
    t = torch.tensor([999, 759, 499, 259, 0])
    assert torch.equal(tcd_intermediate_timestep(t, 0.0), t)
    assert tcd_intermediate_timestep(t, 1.0).tolist() == [0] * 5
    assert tcd_intermediate_timestep(t, 0.3).tolist() == [math.floor(0.7 * v) for v in t.tolist()]


valid_lcm_requests = st.integers(1, LCM_ORIGINAL_STEPS).flatmap(
    lambda original_steps: st.tuples(
        st.integers(1, original_steps),
        st.floats(0.001, 1.0),
        st.just(original_steps),
    ).filter(lambda r: r[0] <= int(r[2] * r[1]))
)


@given(valid_lcm_requests)
def test_lcm_timesteps_properties(request):
    steps, strength, original_steps = request
    timesteps = lcm_timesteps(steps, strength, original_steps)
    assert len(timesteps) == steps
    assert all(a > b for a, b in zip(timesteps[:-1], timesteps[1:], strict=True))
    assert 0 <= timesteps[-1] and timesteps[0] < 1000
    k = 1000 // original_steps
    assert all((t + 1) % k == 0 for t in timesteps)  # on the distillation grid t_n = n k - 1


@given(st.integers(1, 1000), st.floats(0.001, 1.0), st.sampled_from([None, 1000]))
def test_tcd_sigmas_properties(steps, strength, original_inference_steps):
    try:
        sigmas = tcd_sigmas(ALPHAS_CUMPROD, steps, strength, original_inference_steps)
    except ValueError:
        limit = LCM_ORIGINAL_STEPS if original_inference_steps is None else 1000
        assert steps > int(limit * strength)
        return
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0
    assert bool((sigmas[:-1] > sigmas[1:]).all())
