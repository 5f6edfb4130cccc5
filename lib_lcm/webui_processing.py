"""WebUI glue: what enabling LCM-LoRA does to a generation (`p`), and the `<lora:lcm>` alias.

Only called inside the WebUI; host imports live inside functions.
Hook order in the host: before_process -> (checkpoint override loaded) -> setup_prompts -> process -> sampling.
Sampler, steps and CFG are set in before_process; the LoRA tag needs the loaded checkpoint, so it goes
into p.all_prompts / p.all_hr_prompts in process (before any batch parses its extra networks).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from lib_lcm import architecture, prompt_tags, webui_compat
from lib_lcm.params import (
    INFOTEXT_VARIANT,
    INFOTEXT_WARNING,
    PARAMS,
    LcmSettings,
    SettingsError,
    parse_script_args,
)

VARIANT_STEMS = {"sd15": "lcm-lora-sdv1-5", "sdxl": "lcm-lora-sdxl", "ssd1b": "lcm-lora-ssd-1b"}
ARCHITECTURE_NAMES = {
    "sd1": "SD 1.x",
    "sd1-inpaint": "SD 1.x inpainting",
    "sd2": "SD 2.x",
    "sdxl": "SDXL",
    "sdxl-inpaint": "SDXL inpainting",
    "ssd1b": "SSD-1B",
    "sdxl-refiner": "SDXL refiner",
    "unknown": "an unrecognised architecture",
}


class LcmLoraError(RuntimeError):
    """A generation LCM-LoRA cannot run, with a message that names the fix."""


def before_process(p, args):
    """Script hook. The host swallows exceptions raised in script hooks and generates anyway, so a problem is
    recorded on `p` and raised by our sampler before its first UNet call (see `raise_pending_error`)."""
    try:
        p.lcm_lora_settings = settings_for(p, args)
    except SettingsError as e:
        fail_generation(p, str(e))
        return
    if p.lcm_lora_settings.enabled:
        apply_settings(p, p.lcm_lora_settings)


def process(p, sd_model):
    settings = getattr(p, "lcm_lora_settings", None)
    try:
        if settings is not None and settings.enabled:
            enable_for_loaded_checkpoint(p, sd_model, settings)
        else:
            resolve_aliases(p, sd_model)
    except LcmLoraError as e:
        fail_generation(p, str(e))


def fail_generation(p, message: str):
    from lib_lcm.webui_sampler import SAMPLER_LCM

    print(message)
    p.lcm_lora_error = message
    p.sampler_name = SAMPLER_LCM  # the sampler that raises it; hires uses it too
    if getattr(p, "enable_hr", False):
        p.hr_sampler_name = SAMPLER_LCM


def raise_pending_error(p):
    """Abort a generation `fail_generation` marked: HTTP 422 with the message for API callers, the message in the UI."""
    message = getattr(p, "lcm_lora_error", None)
    if message:
        abort_generation(message)


def abort_generation(message: str):
    raise _generation_error_class()(message)


@functools.cache
def _generation_error_class():
    try:
        from fastapi import HTTPException
    except ImportError:  # outside the WebUI (unit tests)
        HTTPException = None

    class LcmLoraGenerationError(HTTPException or LcmLoraError):
        # An HTTPException: the WebUI's API answers with its status and detail and prints no traceback.
        def __init__(self, message):
            if HTTPException is None:
                super().__init__(message)
            else:
                super().__init__(status_code=422, detail=message)
            self.message = message

        def __str__(self):
            return self.message

    return LcmLoraGenerationError


@dataclass(frozen=True)
class CheckpointVariant:
    checkpoint: str
    architecture: str
    variant: str | None

    @property
    def stem(self) -> str | None:
        return VARIANT_STEMS.get(self.variant)


_detected: dict = {}


def detect_loaded_checkpoint(sd_model) -> CheckpointVariant:
    """Architecture of the loaded model: its safetensors header, else the host's model flags."""
    info = getattr(sd_model, "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None) or ""
    name = getattr(info, "name_for_extra", None) or os.path.basename(filename) or "the loaded model"
    key = (filename, _mtime(filename))
    if key in _detected:
        return _detected[key]

    label = "unknown"
    if filename.lower().endswith(".safetensors") and os.path.isfile(filename):
        try:
            label = architecture.detect_checkpoint(filename)
        except (OSError, ValueError):
            label = "unknown"
    if label == "unknown":
        label = _architecture_from_flags(sd_model)
    result = CheckpointVariant(name, label, architecture.lcm_variant_for(label))
    _detected[key] = result
    return result


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _architecture_from_flags(sd_model) -> str:
    # .ckpt files have no readable header; the host's own flags still tell the family.
    in_channels = None
    try:
        in_channels = sd_model.model.diffusion_model.input_blocks[0][0].in_channels
    except (AttributeError, IndexError, TypeError):
        pass
    if getattr(sd_model, "is_sdxl", False):
        return "sdxl-inpaint" if in_channels == 9 else "sdxl"
    if getattr(sd_model, "is_sd2", False):
        return "sd2"
    if getattr(sd_model, "is_sd1", False):
        return "sd1-inpaint" if in_channels == 9 else "sd1"
    return "unknown"


def unsupported_message(found: CheckpointVariant) -> str:
    return (
        f"LCM-LoRA: the loaded checkpoint '{found.checkpoint}' is {ARCHITECTURE_NAMES.get(found.architecture, found.architecture)}; "
        "LCM-LoRA exists for SD 1.5, SDXL and SSD-1B (and their inpainting models). "
        "Load one of those, or turn LCM-LoRA off."
    )


def settings_for(p, args) -> LcmSettings:
    """The panel's/API's args, settings-page defaults for what is left out, XYZ-axis overrides on top."""
    from lib_lcm.webui_ui import default_settings

    settings = parse_script_args(args, defaults=default_settings())
    overrides = getattr(p, "lcm_lora_overrides", None)
    if overrides:
        settings = parse_script_args([{**settings.as_dict(), **overrides}])
    return settings


def sampler_name_for(settings: LcmSettings) -> str:
    from lib_lcm.webui_sampler import SAMPLER_LCM, SAMPLER_TCD

    return SAMPLER_TCD if settings.mode == "TCD" else SAMPLER_LCM


def apply_settings(p, settings: LcmSettings):
    """Sampler, steps, CFG (and the hires pass's) as the panel says; infotext records the rest."""
    sampler_name = sampler_name_for(settings)
    p.sampler_name = sampler_name
    webui_compat.reset_schedule_types(p, hires=getattr(p, "enable_hr", False))
    p.steps = settings.steps
    p.cfg_scale = settings.cfg_scale
    if getattr(p, "enable_hr", False):
        p.hr_sampler_name = sampler_name
        p.hr_second_pass_steps = 0  # 0 = same as steps: the LCM step count
        webui_compat.set_hires_cfg_scale(p, settings.cfg_scale)
    p.lcm_lora_gamma = settings.gamma

    params = p.extra_generation_params
    params["LCM-LoRA weight"] = settings.weight
    params["LCM-LoRA mode"] = settings.mode
    if settings.warnings and _warnings_enabled():
        params[INFOTEXT_WARNING] = "; ".join(settings.warnings)
        for warning in settings.warnings:
            print(f"LCM-LoRA warning: {warning}")


def _map_prompts(p, edit):
    """Apply `edit` to every prompt the host will parse for extra networks (all batches, hires too)."""
    for attr in ("all_prompts", "all_hr_prompts"):
        prompts = getattr(p, attr, None)
        if prompts:
            setattr(p, attr, [edit(text) for text in prompts])
    for attr in ("prompt", "hr_prompt"):
        value = getattr(p, attr, None)
        if isinstance(value, str) and value:
            setattr(p, attr, edit(value))
        elif isinstance(value, list):
            setattr(p, attr, [edit(text) for text in value])


def prompts_with_alias(p) -> bool:
    texts = []
    for attr in ("all_prompts", "all_hr_prompts"):
        texts.extend(getattr(p, attr, None) or [])
    return any(prompt_tags.has_lcm_alias(text) for text in texts)


def resolve_aliases(p, sd_model):
    """`<lora:lcm>` typed by the user becomes the loaded checkpoint's LCM-LoRA (panel on or off)."""
    if not prompts_with_alias(p):
        return None
    found = detect_loaded_checkpoint(sd_model)
    if found.stem is None:
        raise LcmLoraError(unsupported_message(found))
    _map_prompts(p, lambda text: prompt_tags.resolve_lcm_alias(text, found.stem))
    return found


def apply_lora_tag(p, sd_model, settings: LcmSettings) -> CheckpointVariant:
    found = detect_loaded_checkpoint(sd_model)
    if found.stem is None:
        raise LcmLoraError(unsupported_message(found))
    _map_prompts(
        p, lambda text: prompt_tags.apply_lcm_tag(text, found.stem, settings.weight, respect_user_weight=True)
    )
    p.extra_generation_params[INFOTEXT_VARIANT] = found.stem
    return found


def infotext_param_keys():
    return [param.infotext for param in PARAMS if param.infotext]


def on_infotext_pasted(infotext: str, params: dict):
    """Our infotext keys hold a "-", which A1111 1.6's paste parser cuts off; put them back for the panel."""
    webui_compat.restore_infotext_keys(infotext, params, [*infotext_param_keys(), INFOTEXT_VARIANT, INFOTEXT_WARNING])


def _warnings_enabled() -> bool:
    from modules import shared

    return bool(getattr(shared.opts, "lcm_lora_warnings", True))


def enable_for_loaded_checkpoint(p, sd_model, settings: LcmSettings) -> CheckpointVariant:
    """Resolve the variant for the loaded checkpoint, make sure its file is there, tag every prompt once."""
    found = detect_loaded_checkpoint(sd_model)
    if found.stem is None:
        raise LcmLoraError(unsupported_message(found))
    ensure_lora_file(found.variant)
    return apply_lora_tag(p, sd_model, settings)


def ensure_lora_file(variant: str):
    """The verified file for `variant` in the Lora folder, downloaded on first use (policy permitting)."""
    from modules import shared

    from lib_lcm import download, weights
    from lib_lcm.webui_ui import DOWNLOAD_POLICIES

    lora_dir = shared.cmd_opts.lora_dir
    allow = getattr(shared.opts, "lcm_lora_download", DOWNLOAD_POLICIES[0]) == DOWNLOAD_POLICIES[0]
    try:
        return download.ensure_weights(variant, lora_dir, progress=_progress_reporter(variant), allow_download=allow)
    except weights.WeightsError as e:
        raise LcmLoraError(str(e)) from None


def _progress_reporter(variant):
    from modules import shared

    def report(done: int, total: int):
        if total:
            shared.state.textinfo = f"Downloading LCM-LoRA ({variant}): {done / total:.0%} of {total / 2**20:.0f} MB"
    return report
