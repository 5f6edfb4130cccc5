"""What enabling LCM-LoRA does to a generation (`p`), and the `<lora:lcm>` alias.

Hook order in the host: before_process -> (checkpoint override loaded) -> setup_prompts -> process -> sampling.
Sampler, steps and CFG are set in before_process; the LoRA tag needs the loaded checkpoint, so it goes
into p.all_prompts / p.all_hr_prompts in process (before any batch parses its extra networks).
"""
from __future__ import annotations

import functools
import json
import re

from modules import shared

from lib_lcm import prompt_tags
from lib_lcm.families import FAMILY_DEFAULTS
from lib_lcm.params import (
    INFOTEXT_VARIANT,
    INFOTEXT_WARNING,
    PARAMS,
    PARAMS_BY_KEY,
    SAMPLERS_BY_RECIPE,
    LcmSettings,
    SettingsError,
    parse_script_args,
)
from lib_lcm.safetensors_header import read_header
from lib_lcm.weights import catalogue, download, registry
from lib_lcm.weights.errors import WeightsError
from lib_lcm.weights.progress import progress_text
from lib_lcm.weights.verification import lora_modules
from lib_lcm_webui import live, settings
from lib_lcm_webui.checkpoint import CheckpointVariant, detect_loaded_checkpoint, mtime_ns
from lib_lcm_webui.compat import forge, lora_loader, sampler_api, temp_dir
from lib_lcm_webui.console import say_once
from lib_lcm_webui.init_image_seed import encode_init_image_from_seed
from lib_lcm_webui.state import (
    LcmLoraError,
    add_infotext_warning,
    defer_failure_to_sampler,
    generation_state,
    update_generation_state,
)

# The infotext keys our paste handling needs back on 1.6 (see restore_infotext_keys).
INFOTEXT_KEYS = (*(param.infotext for param in PARAMS if param.infotext), INFOTEXT_VARIANT, INFOTEXT_WARNING)
# The host's infotext "key: value" pattern from 1.7 on (`re_param_code`); 1.6 allowed only `[\w ]+` in keys,
# so it read "LCM-LoRA weight: 0.75" as "LoRA weight: 0.75".
_INFOTEXT_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def before_process(p, args):
    """Script hook: read the panel's/API's args; when on, set sampler, steps and CFG."""
    try:
        lcm_settings = settings_for(p, args)
    except SettingsError as e:
        defer_failure_to_sampler(p, str(e))
        return
    update_generation_state(p, settings=lcm_settings)
    if lcm_settings.enabled:
        apply_settings(p, lcm_settings)
    if lcm_settings.live:
        temp_dir.ensure_unsaved_images_folder()  # a live image is never saved: the host writes it there
        live.prepare_live_generation(p, lcm_settings)


def process(p, sd_model):
    """Script hook: tag every prompt with the loaded checkpoint's LCM-LoRA (panel on) or resolve the alias; a live
    image's decoder is checked against the loaded checkpoint; an img2img's init image is encoded from the seed."""
    state = generation_state(p)
    if state.settings is not None and state.settings.live:
        live.check_fast_decode(p)
    if state.enabled:
        encode_init_image_from_seed(p)
    try:
        if state.enabled:
            enable_for_loaded_checkpoint(p, sd_model, state.settings)
        else:
            resolve_aliases(p, sd_model)
    except LcmLoraError as e:
        defer_failure_to_sampler(p, str(e))


def postprocess(p):
    """Script hook: a live image notes whether it was interrupted (its request then leaves the image on screen)."""
    state = generation_state(p)
    if state.settings is not None and state.settings.live:
        live.note_if_interrupted()


def settings_for(p, args) -> LcmSettings:
    """The panel's/API's args, settings-page defaults for what is left out, X/Y/Z-axis overrides on top. A family
    axis brings the family's own steps, CFG and weight, unless an axis sets them too."""
    lcm_settings = parse_script_args(args, defaults=settings.panel_defaults())
    overrides = generation_state(p).overrides
    if overrides:
        values = lcm_settings.as_dict()
        if overrides.get("family", lcm_settings.family) != lcm_settings.family:
            values = {key: value for key, value in values.items() if key not in FAMILY_DEFAULTS}
        lcm_settings = parse_script_args([{**values, **overrides}])
    return lcm_settings


def apply_settings(p, lcm_settings: LcmSettings):
    """Sampler, steps, CFG (and the hires pass's) as the panel says; infotext records the rest."""
    hires = getattr(p, "enable_hr", False)
    p.sampler_name = lcm_settings.sampler_name
    sampler_api.reset_schedule_types(p, hires=hires)
    p.steps = lcm_settings.steps
    p.cfg_scale = lcm_settings.cfg_scale
    if hires:
        p.hr_sampler_name = lcm_settings.sampler_name
        p.hr_second_pass_steps = 0  # 0 = same as steps: the LCM step count
        forge.set_hires_cfg_scale(p, lcm_settings.cfg_scale)

    params = p.extra_generation_params
    params[PARAMS_BY_KEY["weight"].infotext] = lcm_settings.weight
    if lcm_settings.is_lcm:  # absent family = LCM-LoRA: its images' infotext stays what it always was
        params[PARAMS_BY_KEY["mode"].infotext] = lcm_settings.mode
    else:
        params[PARAMS_BY_KEY["family"].infotext] = lcm_settings.family
    if lcm_settings.warnings and settings.warnings_enabled():
        for warning in lcm_settings.warnings:
            add_infotext_warning(p, warning)
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


def supported_checkpoint(sd_model) -> CheckpointVariant:
    found = detect_loaded_checkpoint(sd_model)
    if found.stem is None:
        raise LcmLoraError(found.unsupported_message())
    return found


def resolve_aliases(p, sd_model):
    """`<lora:lcm>` typed by the user becomes the loaded checkpoint's LCM-LoRA (panel on or off)."""
    if not prompts_with_alias(p):
        return
    found = supported_checkpoint(sd_model)
    stems = registry.stems()
    _map_prompts(p, lambda text: prompt_tags.resolve_lcm_alias(text, found.stem, stems))


def enable_for_loaded_checkpoint(p, sd_model, lcm_settings: LcmSettings) -> None:
    """Resolve the variant for the loaded checkpoint, make sure its file is there, tag every prompt once."""
    if not lcm_settings.is_lcm:
        enable_family(p, sd_model, lcm_settings)
        return
    found = supported_checkpoint(sd_model)
    ensure_lora_file(found.variant, found.stem)
    stems = registry.stems()
    _map_prompts(p, lambda text: prompt_tags.apply_lcm_tag(
        text, found.stem, lcm_settings.weight, stems, respect_user_weight=True))
    p.extra_generation_params[INFOTEXT_VARIANT] = found.stem


def enable_family(p, sd_model, lcm_settings: LcmSettings) -> None:
    """A family other than LCM-LoRA: its file for the loaded checkpoint and step count (the user's own copy when
    the prompt holds one, recognised by its sha256), the tag, and the sampler of the file's recipe."""
    found = detect_loaded_checkpoint(sd_model)
    entries = registry.current_registry()
    try:
        entry = catalogue.select_entry(entries, lcm_settings.family, found.architecture, lcm_settings.steps)
    except catalogue.NoFileForArchitecture as e:
        raise LcmLoraError(f"LCM-LoRA: the loaded checkpoint '{found.checkpoint}' is {found.family}: {e}.") from None
    own_copy, entry = user_copy_in_prompt(p, entries, entry, found.architecture)
    warning = catalogue.steps_warning(entry, lcm_settings.steps)
    if warning and settings.warnings_enabled():
        add_infotext_warning(p, warning)
        print(f"LCM-LoRA warning: {warning}")
    stems = registry.stems(entries, lcm_settings.family) + registry.stems(entries)
    if own_copy is None:
        ensure_lora_file(entry.variant, entry.stem)
        _map_prompts(p, lambda text: prompt_tags.apply_lcm_tag(
            text, entry.stem, lcm_settings.weight, stems, respect_user_weight=True))
    else:  # the page may have tagged the catalogue's copy already: the user's own copy stands alone
        _map_prompts(p, lambda text: prompt_tags.remove_lcm_tag(text, stems))
    sampler = SAMPLERS_BY_RECIPE[entry.recipe]
    p.sampler_name = sampler
    if getattr(p, "enable_hr", False):
        p.hr_sampler_name = sampler
    update_generation_state(p, recipe=entry.recipe)
    p.extra_generation_params[INFOTEXT_VARIANT] = own_copy or entry.stem


def user_copy_in_prompt(p, entries, entry, architecture):
    """(name, entry): a LoRA of the prompt that is one of the family's files for this checkpoint under another name
    (the user's own download), else (None, `entry`). Other catalogue files in the prompt get a warning: an earlier
    upload (DMD2's first LoRAs) says to re-download, another family's file says which family runs its recipe."""
    ours = set(registry.stems(entries, None))
    texts = [*(getattr(p, "all_prompts", None) or []), *(getattr(p, "all_hr_prompts", None) or [])]
    names = dict.fromkeys(name for text in texts for name in prompt_tags.lora_names(text) if name not in ours)
    for name in names:
        match = catalogue.match_sha256(entries, lora_loader.lora_file_sha256(name) or "")
        if match is None:
            continue
        if match.obsolete is not None:
            _warn(p, f"<lora:{name}>: {match.message()}")
        elif match.entry.family == entry.family and architecture in match.entry.architectures:
            return name, match.entry
        else:
            _warn(p, f"<lora:{name}> is {match.entry.stem}, a {match.entry.family} file: pick that family to run "
                     "the sampler it was distilled for")
    return None, entry


def _warn(p, message: str) -> None:
    add_infotext_warning(p, message)
    say_once(f"LCM-LoRA warning: {message}")


def ensure_lora_file(variant: str, stem: str):
    """The verified file for `variant` in the Lora folder, downloaded on first use (policy permitting)."""
    def report(done: int, total: int | None):
        shared.state.textinfo = progress_text(stem, done, total)

    try:
        return download.ensure_weights(variant, shared.cmd_opts.lora_dir, progress=report,
                                       allow_download=settings.downloads_allowed())
    except WeightsError as e:
        raise LcmLoraError(str(e)) from None


def on_infotext_pasted(infotext: str, params: dict):
    """Our infotext keys hold a "-", which A1111 1.6's paste parser cuts off; put them back for the panel."""
    restore_infotext_keys(infotext, params, INFOTEXT_KEYS)



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

def check_lora_modules(p) -> None:
    """Script hook (after the host activated the prompt's LoRAs): say, once in the console and in the infotext,
    when the host applies fewer modules of one of our LCM-LoRA files than the file holds."""
    for stem in registry.stems(family=None):
        applied = lora_loader.applied_lora_modules(stem)
        if applied is None:
            continue
        count, path = applied
        expected = _module_count(path, mtime_ns(path))
        if expected and count < expected:
            message = (f"the WebUI applied {count} of the {expected} modules of {stem}: the image is not what "
                       "LCM-LoRA was trained to give; update this extension, or report it with your WebUI version")
            say_once(f"LCM-LoRA warning: {message}")
            add_infotext_warning(p, message)


@functools.lru_cache(maxsize=16)
def _module_count(path: str, mtime_ns: int | None) -> int | None:
    try:
        return len(lora_modules(read_header(path)))
    except (OSError, ValueError):
        return None

