"""The Forges: Forge 2.x (lllyasviel/stable-diffusion-webui-forge, `backend/`) and the `ldm_patched` Forges
(Panchovix's reForge, Haoming02's Forge Classic), detected by `forge_sampling`.

Forge's `CFGDenoiser.forward` runs the UNet through its own sampling function instead of the k-diffusion wrapper
(and already drops the uncond pass at CFG 1); samplers bracket sampling with its `sampling_prepare` /
`sampling_cleanup`, which load the UNet and apply the LoRA patches; the hires pass has its own CFG scale,
`p.hr_cfg` (Forge, reForge); the checkpoint is loaded at the first generation, so until then `shared.sd_model` is a
placeholder (`describable_model`).
"""
from __future__ import annotations

import contextlib
import importlib
import types

# Where a Forge keeps `sampling_prepare`/`sampling_cleanup`: Forge 2.x, then the `ldm_patched` Forges (reForge,
# Forge Classic; Forge 2.x has no `modules_forge.forge_sampler`).
_FORGE_SAMPLING_MODULES = ("backend.sampling.sampling_function", "modules_forge.forge_sampler")


def forge_sampling():
    """The host's Forge sampling module (one with `sampling_prepare` and `sampling_cleanup`), else None (A1111).

    `modules_forge` first: on A1111 that import fails at once, and a `backend` package another extension might
    put on sys.path is never imported.
    """
    try:
        importlib.import_module("modules_forge.forge_version")
    except ImportError:
        return None
    for name in _FORGE_SAMPLING_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "sampling_prepare") and hasattr(module, "sampling_cleanup"):
            return module
    return None


def cfg_denoiser_base(forge):
    """The host's CFG denoiser class our samplers extend: Forge's k-diffusion one runs its own UNet patcher."""
    if forge is not None:
        from modules.sd_samplers_kdiffusion import CFGDenoiserKDiffusion

        return CFGDenoiserKDiffusion
    from modules.sd_samplers_cfg_denoiser import CFGDenoiser

    return CFGDenoiser


@contextlib.contextmanager
def forge_sampling_pass(forge, sd_model, x, post_cfg=None):
    """Forge: load this pass' UNet (LoRA patches applied) for sampling, as Forge's samplers do.

    `post_cfg(x, sigma, denoised) -> denoised` is installed as a post-CFG function on a clone of the pass' UNet
    patcher; the pass' own patcher is put back afterwards. Post-CFG runs before mask blending.
    """
    pass_unet = unet = sd_model.forge_objects.unet
    if post_cfg is not None:
        unet = pass_unet.clone()
        unet.set_model_sampler_post_cfg_function(
            lambda args: post_cfg(args["input"], args["sigma"], denoised=args["denoised"]))
        sd_model.forge_objects.unet = unet
    try:
        forge.sampling_prepare(unet, x=x)
        try:
            yield unet
        finally:
            forge.sampling_cleanup(unet)
    finally:
        sd_model.forge_objects.unet = pass_unet


def set_hires_cfg_scale(p, cfg_scale: float) -> None:
    """Forge runs the hires pass at `p.hr_cfg` (API default 1.0), not `p.cfg_scale`; A1111 has no such field."""
    if hasattr(p, "hr_cfg"):
        p.hr_cfg = cfg_scale


def describable_model(sd_model, sd_models):
    """The model the next generation uses: `sd_model` if it is the selected checkpoint, else a stand-in naming that.

    Forge loads a checkpoint at the next generation: at first `shared.sd_model` is a placeholder without
    `sd_checkpoint_info`, and after a pick in its top bar it is the previous model. `sd_models.select_checkpoint()`
    (A1111 and Forge) is the one selected, which that generation loads. None when there is neither."""
    loaded = getattr(sd_model, "sd_checkpoint_info", None)
    try:
        selected = sd_models.select_checkpoint()
    except Exception:  # no checkpoint at all (the host raises FileNotFoundError) or a host without it
        selected = None
    if loaded is not None and (selected is None or getattr(selected, "filename", None) == loaded.filename):
        return sd_model
    return types.SimpleNamespace(sd_checkpoint_info=selected) if selected is not None else None
