"""The "LCM-LoRA" section of the WebUI's Settings: the panel's defaults (from PARAMS), the download policy and
the guard-rail warnings; and the values read back from it."""
from __future__ import annotations

import gradio as gr
from modules import shared

from lib_lcm.params import PARAMS

SECTION = ("lcm_lora", "LCM-LoRA")
DOWNLOAD_SETTING = "lcm_lora_download"
DOWNLOAD_POLICIES = ("On first use", "Never (place the files yourself)")
WARNINGS_SETTING = "lcm_lora_warnings"


def _option(default, label, component=None, component_args=None, **kwargs):
    return shared.OptionInfo(default, label, component, component_args, section=SECTION, **kwargs)


def _param_option(param):
    if param.choices:
        return _option(param.default, param.setting_label, gr.Radio, {"choices": list(param.choices)})
    slider = {"minimum": param.minimum, "maximum": param.maximum, "step": param.step}
    # "TCD gamma" in an infotext is the panel's value; naming it here lets a paste override this default too.
    extra = {"infotext": param.infotext} if param.key == "gamma" else {}
    return _option(param.default, param.setting_label, gr.Slider, slider, **extra)


def options() -> dict:
    """{option key: OptionInfo}, in the order the Settings page shows them."""
    found = {param.setting: _param_option(param) for param in PARAMS if param.setting}
    found[DOWNLOAD_SETTING] = _option(DOWNLOAD_POLICIES[0], "Download the LCM-LoRA weights", gr.Radio,
                                      {"choices": list(DOWNLOAD_POLICIES)})
    found[WARNINGS_SETTING] = _option(True, "Warn when CFG > 2 or steps > 8 with LCM-LoRA on")
    return found


def register_settings():
    for key, info in options().items():
        add_option(key, info)


def panel_defaults() -> dict:
    """{param key: default} from the Settings page; the table's default where the option is not there yet."""
    opts = shared.opts
    return {param.key: getattr(opts, param.setting, param.default) for param in PARAMS if param.setting}


def downloads_allowed() -> bool:
    return getattr(shared.opts, DOWNLOAD_SETTING, DOWNLOAD_POLICIES[0]) == DOWNLOAD_POLICIES[0]


def warnings_enabled() -> bool:
    return bool(getattr(shared.opts, WARNINGS_SETTING, True))


def add_option(key: str, info) -> None:
    """Register a setting; 1.6's `add_option` left the default out of `opts.data`, so the options API did not
    list the setting until it was saved once. Store the default like 1.7+ does."""
    opts = shared.opts
    opts.add_option(key, info)
    data = getattr(opts, "data", None)
    if data is not None and key not in data and not getattr(info, "do_not_save", False):
        data[key] = info.default


def keep_option_for_restore(key: str) -> None:
    """Before 1.7 an option at its default is not in `opts.data`, and the host restores only those after a
    generation's `override_settings`: put the default there (same value) so the override is undone."""
    data = shared.opts.data
    if key not in data and key in getattr(shared.opts, "data_labels", {}):
        data[key] = shared.opts.data_labels[key].default
