"""What differs between the hosts we support (A1111 1.6.0 - 1.10.1, Forge 2.x), and the host tricks, in one place.

Each function feature-tests (hasattr, a guarded import) rather than comparing version strings, so forks that
backport a feature get it too. Differences covered (first A1111 version that has the feature):
- 1.6: `InputAccordion` (a checkbox that is the accordion's header; forks may lack it).
- 1.7: infotext keys may hold "-" and "/" (1.6 cut "LCM-LoRA weight" to "LoRA weight" when pasting);
  `Options.add_option` stores the default in `opts.data` (before, `GET /sdapi/v1/options` did not list
  an extension's setting until it was saved).
- 1.8: `Sampler.add_infotext(p)` (before: samplers wrote "Pad conds" inline); built-in "LCM" sampler.
- 1.9: schedule types (`p.scheduler`, `p.hr_scheduler`, the cached `sd_samplers.get_sampler_and_scheduler`).

Forge (lllyasviel/stable-diffusion-webui-forge 2.x, detected by `forge_sampling`): its `CFGDenoiser.forward` runs
the UNet through `backend.sampling.sampling_function` instead of the k-diffusion wrapper (and already drops the
uncond pass at CFG 1); samplers bracket sampling with its `sampling_prepare`/`sampling_cleanup`, which load the
UNet and apply the LoRA patches; the hires pass has its own CFG scale, `p.hr_cfg` (default 1); the checkpoint is
loaded at the first generation, so until then `shared.sd_model` is a placeholder (`describable_model`).
The Forges built on `ldm_patched` (Panchovix's reForge, Haoming02's Forge Classic) do the same through
`modules_forge.forge_sampler` (same `sampling_prepare`/`sampling_cleanup`, same UNet patcher with post-CFG
functions, same CFG-1 skip in `ldm_patched.modules.samplers.sampling_function`); reForge also has `p.hr_cfg`.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import sys
import types

from modules import patches, paths_internal, shared

try:  # 1.6+
    from modules.ui_components import InputAccordion
except ImportError:
    InputAccordion = None
try:  # 1.6+: TAESD behind the "VAE type for decode" option
    from modules import sd_vae_taesd
except ImportError:
    sd_vae_taesd = None
try:  # 1.6+: img2img extra noise and its callback
    from modules.script_callbacks import ExtraNoiseParams, extra_noise_callback
except ImportError:
    ExtraNoiseParams = extra_noise_callback = None

# The host's infotext "key: value" pattern from 1.7 on (`re_param_code`); 1.6 allowed only `[\w ]+` in keys,
# so it read "LCM-LoRA weight: 0.75" as "LoRA weight: 0.75".
_INFOTEXT_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# Infotext keys the host's NGMS path writes; `uncond_pass_skipped` borrows that path and must not leave them.
_NGMS_KEYS = ("NGMS", "NGMS all steps")
_MISSING = object()


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


# -- sampling tricks -----------------------------------------------------------------------------------


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


# -- the host's LoRA loader (A1111's extensions-builtin/Lora) ---------------------------------------------

# A1111 1.6-1.10 name `up_blocks.N.upsamplers.0.conv` with SD 1.x's rule (`output_blocks_{2+3N}_{1 if N == 0
# else 2}_conv`, right where up block 0 has no attention); SDXL's and SSD-1B's up block 0 has attention, its
# upsampler is `output_blocks.2.2.conv`, and the loader's `lora_unet` -> `diffusion_model` fallback misses too:
# the module is dropped with a debug-level log line only. Forge maps it from the model's own config.
_UPSAMPLER_KEY = re.compile(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv$")


def lora_loader():
    """The built-in Lora extension's `networks` module where it loads modules the A1111 way, else None (Forge).

    `module_types` too: reForge keeps A1111's `convert_diffusers_name_to_compvis` as a no-op stub while it loads
    LoRAs through `ldm_patched` and leaves every network's `modules` empty (that would read as 0 applied)."""
    networks = sys.modules.get("networks")
    a1111_way = hasattr(networks, "convert_diffusers_name_to_compvis") and hasattr(networks, "module_types")
    return networks if a1111_way else None


def _upsampler_layer(layers, up_block: int) -> str | None:
    """The loaded UNet's name for up block `up_block`'s upsampler conv: the Upsample is the block's last part."""
    block = 2 + 3 * up_block
    return next((name for name in (f"diffusion_model_output_blocks_{block}_{part}_conv" for part in (2, 1))
                 if name in layers), None)


def _with_upsampler_names(convert):
    def convert_diffusers_name_to_compvis(key, is_sd2):
        name = convert(key, is_sd2)
        found = _UPSAMPLER_KEY.match(key)
        layers = getattr(shared.sd_model, "network_layer_mapping", None)
        if found is None or layers is None or name in layers:
            return name  # a name the host maps is never changed
        return _upsampler_layer(layers, int(found.group(1))) or name
    return convert_diffusers_name_to_compvis


def map_lora_upsamplers() -> bool:
    """Make the host's LoRA loader find every up-block upsampler of SDXL-family UNets (undo: `unmap_...`)."""
    networks = lora_loader()
    if networks is None:
        return False
    unmap_lora_upsamplers()
    patches.patch(__name__, networks, "convert_diffusers_name_to_compvis",
                  _with_upsampler_names(networks.convert_diffusers_name_to_compvis))
    return True


def unmap_lora_upsamplers() -> None:
    networks = lora_loader()
    if networks is not None and patches.original(__name__, networks, "convert_diffusers_name_to_compvis"):
        patches.undo(__name__, networks, "convert_diffusers_name_to_compvis")


def applied_lora_modules(stem: str):
    """(modules the host applies, the network's file) for the loaded LoRA named `stem`; None where unknown."""
    networks = lora_loader()
    net = next((net for net in getattr(networks, "loaded_networks", ()) if getattr(net, "name", None) == stem), None)
    if net is None or not hasattr(net, "modules"):
        return None
    return len(net.modules), net.network_on_disk.filename


# -- processing ----------------------------------------------------------------------------------------


def reset_schedule_types(p, hires: bool) -> None:
    """Set the schedule type(s) to "Automatic" on hosts that have them (1.9+): our samplers make their own
    schedule, and the infotext must not name one that was not used."""
    if hasattr(p, "scheduler"):
        p.scheduler = "Automatic"
    if hires and hasattr(p, "hr_scheduler"):
        p.hr_scheduler = "Automatic"


def set_hires_cfg_scale(p, cfg_scale: float) -> None:
    """Forge runs the hires pass at `p.hr_cfg` (API default 1.0), not `p.cfg_scale`; A1111 has no such field."""
    if hasattr(p, "hr_cfg"):
        p.hr_cfg = cfg_scale


def restore_infotext_keys(infotext: str, params: dict, keys) -> None:
    """For `on_infotext_pasted`: add those of `keys` that the host's parser missed (1.6: every key with a "-")
    from the infotext's last line, unquoted like the host does. Keys the host parsed are left as they are."""
    wanted = set(keys) - set(params)
    if not wanted:
        return
    last_line = infotext.strip().split("\n")[-1]
    for key, value in _INFOTEXT_PARAM.findall(last_line):
        if key not in wanted:
            continue
        if len(value) > 1 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        params[key] = value


# -- UI and settings -----------------------------------------------------------------------------------


def add_option(key: str, info) -> None:
    """Register a setting; 1.6's `add_option` left the default out of `opts.data`, so the options API did not
    list the setting until it was saved once. Store the default like 1.7+ does."""
    opts = shared.opts
    opts.add_option(key, info)
    data = getattr(opts, "data", None)
    if data is not None and key not in data and not getattr(info, "do_not_save", False):
        data[key] = info.default


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


# -- decoding (Live's fast decode) -------------------------------------------------------------------------

DECODE_OPTION = "sd_vae_decode_method"
TAESD_DECODE = "TAESD"
_TAESD_FILES = {"sd": "taesd_decoder.pth", "sdxl": "taesdxl_decoder.pth", "sd3": "taesd3_decoder.pth"}


def has_taesd_decode() -> bool:
    """Whether the host decodes with TAESD on request: its "VAE type for decode" option and loader (1.6+)."""
    labels = getattr(shared.opts, "data_labels", {})
    return sd_vae_taesd is not None and hasattr(sd_vae_taesd, "decoder_model") and DECODE_OPTION in labels


def decode_with_full_vae() -> None:
    """During a generation that overrides the decode option (the host puts it back afterwards); no save."""
    shared.opts.data[DECODE_OPTION] = "Full"


def taesd_model_key(sd_model) -> str | None:
    """Which TAESD decoder the host loads for `sd_model` ("sd", "sdxl", "sd3"); None on a host without TAESD."""
    if not has_taesd_decode():
        return None
    return "sd3" if getattr(sd_model, "is_sd3", False) else "sdxl" if getattr(sd_model, "is_sdxl", False) else "sd"


def taesd_file_hint(key: str) -> str:
    return f"models/VAE-taesd/{_TAESD_FILES.get(key, _TAESD_FILES['sd'])}"


def taesd_file_state(key: str):
    """(mtime_ns, size) of the host's TAESD decoder file for `key`, None when it is missing."""
    path = os.path.join(paths_internal.models_path, "VAE-taesd", _TAESD_FILES.get(key, _TAESD_FILES["sd"]))
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def load_taesd_decoder():
    """The host's TAESD loader for the loaded model (downloads on first use, raises, keeps it for decoding)."""
    return sd_vae_taesd.decoder_model()


def keep_option_for_restore(key: str) -> None:
    """Before 1.7 an option at its default is not in `opts.data`, and the host restores only those after a
    generation's `override_settings`: put the default there (same value) so the override is undone."""
    data = shared.opts.data
    if key not in data and key in getattr(shared.opts, "data_labels", {}):
        data[key] = shared.opts.data_labels[key].default
