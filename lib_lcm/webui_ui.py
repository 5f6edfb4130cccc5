"""WebUI glue: the "LCM-LoRA" panel, its settings section and its infotext/paste wiring.

gradio and `modules` are imported inside functions: this file is only called while the WebUI builds its UI.
"""
from __future__ import annotations

from lib_lcm.params import ELEM_PREFIX, INFOTEXT_VARIANT, PARAMS, SCRIPT_TITLE

SETTINGS_SECTION = ("lcm_lora", "LCM-LoRA")
DOWNLOAD_POLICIES = ("On first use", "Never (place the files yourself)")


def elem_id(tab: str, key: str) -> str:
    return f"{ELEM_PREFIX}_{tab}_{key}"


def default_settings() -> dict:
    """Panel defaults from the settings page (falls back to the table when options are not there yet)."""
    from modules import shared

    opts = shared.opts
    return {
        "steps": getattr(opts, "lcm_lora_steps", 4),
        "cfg_scale": getattr(opts, "lcm_lora_cfg_scale", 1.0),
        "weight": getattr(opts, "lcm_lora_weight", 1.0),
        "mode": getattr(opts, "lcm_lora_mode", "LCM"),
        "gamma": getattr(opts, "lcm_lora_tcd_gamma", 0.3),
    }


def _component(gr, param, tab, value):
    common = {"label": param.label, "elem_id": elem_id(tab, param.key)}
    if param.choices:
        return gr.Radio(choices=list(param.choices), value=value, **common)
    return gr.Slider(minimum=param.minimum, maximum=param.maximum, step=param.step, value=value,
                     info=param.info or None, **common)


def build_panel(script, is_img2img: bool):
    """Components in PARAMS order (that order is the API's positional order)."""
    import gradio as gr

    tab = "img2img" if is_img2img else "txt2img"
    try:
        defaults = default_settings()
    except Exception:  # settings not registered yet (first start): use the table's defaults
        defaults = {}
    components = {}
    enabled_param = PARAMS[0]
    accordion = _input_accordion()
    if accordion is not None:
        enabled = accordion(False, label=SCRIPT_TITLE, elem_id=elem_id(tab, "enabled"))
        container = enabled
    else:  # 1.6 has no InputAccordion
        container = gr.Accordion(SCRIPT_TITLE, open=False, elem_id=elem_id(tab, "accordion"))
    with container:
        if accordion is None:
            enabled = gr.Checkbox(False, label=enabled_param.label, elem_id=elem_id(tab, "enabled"))
        components["enabled"] = enabled
        with gr.Row():
            for param in PARAMS[1:3]:
                components[param.key] = _component(gr, param, tab, defaults.get(param.key, param.default))
        with gr.Row():
            for param in PARAMS[3:]:
                components[param.key] = _component(gr, param, tab, defaults.get(param.key, param.default))
        gr.HTML(value="", elem_id=elem_id(tab, "status"))

    script.infotext_fields = infotext_fields(components)
    script.paste_field_names = [param.infotext for param in PARAMS if param.infotext]
    return [components[param.key] for param in PARAMS]


def _input_accordion():
    try:
        from modules.ui_components import InputAccordion
    except ImportError:
        return None
    return InputAccordion


def infotext_fields(components: dict):
    """Pasting an LCM-LoRA image's infotext turns the panel on and restores its values."""

    def when_lcm(key, convert=lambda v: v):
        def read(params):
            if INFOTEXT_VARIANT not in params or key not in params:
                return _no_change()
            return convert(params[key])
        return read

    fields = [(components["enabled"], lambda params: INFOTEXT_VARIANT in params)]
    fields.append((components["steps"], when_lcm("Steps", int)))
    fields.append((components["cfg_scale"], when_lcm("CFG scale", float)))
    for param in PARAMS:
        if param.infotext:
            fields.append((components[param.key], when_lcm(param.infotext)))
    return fields


def _no_change():
    import gradio as gr

    return gr.update()


def register_settings():
    import gradio as gr
    from modules import shared

    def option(default, label, component=None, component_args=None, **kwargs):
        return shared.OptionInfo(default, label, component, component_args, section=SETTINGS_SECTION, **kwargs)

    by_key = {param.key: param for param in PARAMS}
    slider = lambda key: {"minimum": by_key[key].minimum, "maximum": by_key[key].maximum, "step": by_key[key].step}  # noqa: E731
    options = {
        "lcm_lora_steps": option(4, "Default LCM steps", gr.Slider, slider("steps")),
        "lcm_lora_cfg_scale": option(1.0, "Default LCM CFG (1 = fastest, negative prompt ignored)", gr.Slider,
                                     slider("cfg_scale")),
        "lcm_lora_weight": option(1.0, "Default LCM-LoRA weight", gr.Slider, slider("weight")),
        "lcm_lora_mode": option("LCM", "Default sampler mode", gr.Radio, {"choices": list(by_key["mode"].choices)}),
        "lcm_lora_tcd_gamma": option(0.3, "TCD gamma (used by the 'LCM-LoRA TCD' sampler)", gr.Slider,
                                     slider("gamma"), infotext="TCD gamma"),
        "lcm_lora_download": option(DOWNLOAD_POLICIES[0], "Download the LCM-LoRA weights", gr.Radio,
                                    {"choices": list(DOWNLOAD_POLICIES)}),
        "lcm_lora_warnings": option(True, "Warn when CFG > 2 or steps > 8 with LCM-LoRA on"),
    }
    for key, info in options.items():
        shared.opts.add_option(key, info)
