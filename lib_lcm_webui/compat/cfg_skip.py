"""The CFG-1 skip on A1111: one UNet row per step, through the host's own uncond-skip (NGMS) path.

A1111 1.6-1.10 have no "skip the uncond pass at CFG 1"; their NGMS option skips it on odd steps only. These
helpers make the host take that path on every step, keeping what it does there (mask blending, callbacks,
previews) and undoing every side effect. (The Forges skip the uncond pass at CFG 1 themselves.)
"""
from __future__ import annotations

import contextlib
import functools
import math

from modules import shared

# Infotext keys the host's NGMS path writes; `uncond_pass_skipped` borrows that path and must not leave them.
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


@contextlib.contextmanager
def uncond_pass_skipped(cfg_denoiser):
    """Make the host's CFG denoiser take its own uncond-skip (NGMS) path for one call.

    The call must pass `s_min_uncond=math.inf`; the NGMS infotext keys that path writes are put back as they
    were, and the step counter is restored if the call raised before advancing it.
    """
    params = cfg_denoiser.p.extra_generation_params
    saved = {key: params.get(key, _MISSING) for key in _NGMS_KEYS}
    step = cfg_denoiser.step
    cfg_denoiser.step = _OddStep(step)
    try:
        with _cond_rows_not_batched_with_uncond():
            yield math.inf
    finally:
        if isinstance(cfg_denoiser.step, _OddStep):  # forward raised before its own `step += 1`
            cfg_denoiser.step = step
        for key, value in saved.items():
            if value is _MISSING:
                params.pop(key, None)
            else:
                params[key] = value


@contextlib.contextmanager
def _cond_rows_not_batched_with_uncond():
    """`batch_cond_uncond` off for the skipped call (1.6+ option; the same one UNet call on the cond rows).

    With it on, a neighbour that replaces the UNet wrapper's forward and picks rows itself assumes the uncond rows
    follow the cond rows: AnimateDiff's context windows take rows `i` and `i + frames`, past the end of a batch
    without uncond rows (IndexError). Off, the host's other branch calls the UNet on the cond rows in chunks of the
    batch size, which is all of them: one call, as before.
    """
    opts = shared.opts
    if "batch_cond_uncond" not in getattr(opts, "data_labels", {}):
        yield
        return
    saved = opts.data.get("batch_cond_uncond", _MISSING)
    opts.data["batch_cond_uncond"] = False
    try:
        yield
    finally:
        if saved is _MISSING:
            opts.data.pop("batch_cond_uncond", None)
        else:
            opts.data["batch_cond_uncond"] = saved


def image_cond_trimmed_to_batch(kwargs: dict, rows: int) -> dict:
    """The host's uncond-skip path drops the uncond rows of x but not of the image conditioning; an inpainting
    UNet concatenates that to x, so keep only the rows x has (the cond rows come first)."""
    cond = kwargs.get("cond")
    concat = cond.get("c_concat") if isinstance(cond, dict) else None
    if concat and concat[0] is not None and concat[0].shape[0] > rows:
        return {**kwargs, "cond": {**cond, "c_concat": [concat[0][:rows], *concat[1:]]}}
    return kwargs


def compvis_denoiser(sd_model, **kwargs):
    """k-diffusion's eps denoiser of `sd_model` (A1111), its image conditioning fitted to the uncond-skip path.

    Built when called, never at import: the Forges drive the UNet through their own denoiser, and Forge Neo's
    trimmed k_diffusion has no `external.CompVisDenoiser` (a subclass at module level stopped the extension from
    loading there)."""
    return _compvis_denoiser_class()(sd_model, **kwargs)


@functools.lru_cache(maxsize=1)
def _compvis_denoiser_class():
    import k_diffusion.external

    class CompVisDenoiser(k_diffusion.external.CompVisDenoiser):
        def forward(self, input, sigma, **kwargs):
            return super().forward(input, sigma, **image_cond_trimmed_to_batch(kwargs, input.shape[0]))

    return CompVisDenoiser
