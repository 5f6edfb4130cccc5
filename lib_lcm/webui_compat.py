"""WebUI glue: what differs between the A1111 versions we support (1.6.0 - 1.10.1), in one place.

Each function takes the host object it works on, or imports `modules` inside itself, and feature-tests
(hasattr) rather than comparing version strings, so forks that backport a feature get it too.

Differences covered (first version that has the feature):
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
"""
from __future__ import annotations

import importlib
import json
import re
import types

# The host's infotext "key: value" pattern from 1.7 on (`re_param_code`); 1.6 allowed only `[\w ]+` in keys,
# so it read "LCM-LoRA weight: 0.75" as "LoRA weight: 0.75".
_INFOTEXT_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


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


def set_hires_cfg_scale(p, cfg_scale: float) -> None:
    """Forge runs the hires pass at `p.hr_cfg` (API default 1.0), not `p.cfg_scale`; A1111 has no such field."""
    if hasattr(p, "hr_cfg"):
        p.hr_cfg = cfg_scale


def add_option(key: str, info) -> None:
    """Register a setting; 1.6's `add_option` left the default out of `opts.data`, so the options API did not
    list the setting until it was saved once. Store the default like 1.7+ does."""
    from modules import shared

    opts = shared.opts
    opts.add_option(key, info)
    data = getattr(opts, "data", None)
    if data is not None and key not in data and not getattr(info, "do_not_save", False):
        data[key] = info.default


def input_accordion():
    """`modules.ui_components.InputAccordion` (A1111 1.6+), or None."""
    try:
        from modules.ui_components import InputAccordion
    except ImportError:
        return None
    return InputAccordion


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


def describable_model(sd_model, sd_models):
    """`sd_model` if it names its checkpoint, else a stand-in naming the one the host will load next.

    Forge loads the checkpoint at the first generation; until then `shared.sd_model` is a placeholder
    (`FakeInitialModel`) without `sd_checkpoint_info`, and the panel would have nothing to describe.
    `sd_models.select_checkpoint()` (A1111 and Forge) is the checkpoint selected in Settings, the one that
    generation loads. None when there is neither.
    """
    if getattr(sd_model, "sd_checkpoint_info", None) is not None:
        return sd_model
    try:
        info = sd_models.select_checkpoint()
    except Exception:  # no checkpoint at all (the host raises FileNotFoundError) or a host without it
        info = None
    return types.SimpleNamespace(sd_checkpoint_info=info) if info is not None else None


def forge_sampling():
    """Forge's `backend.sampling.sampling_function` module when the host is Forge, else None (A1111).

    Looked up at call time. `modules_forge` first: on A1111 that import fails at once, and a `backend` package
    another extension might put on sys.path is never imported.
    """
    try:
        importlib.import_module("modules_forge.forge_version")
        from backend.sampling import sampling_function
    except ImportError:
        return None
    return sampling_function
