"""The "LCM-LoRA" panel (accordion) in txt2img and img2img, its events, and its infotext/paste wiring.

The panel's components are returned in PARAMS order (the API's positional order). What the page does when
the panel is switched on or off (the tab's own sampler, schedule type, steps, CFG, hires controls and the
`<lora:...>` tag) is decided in the browser by javascript/lcm_lora_panel.js; gradio hands it the current
values and applies the values it returns, so no request reaches the server for it. Everything that script
needs to know (sampler names, LoRA stems, the host's controls and what they are set to) comes from `page_config`.
"""
from __future__ import annotations

import html
import json

import gradio as gr

try:  # A1111 1.6+: a checkbox that is the accordion's header (forks may lack it)
    from modules.ui_components import InputAccordion
except ImportError:
    InputAccordion = None

from lib_lcm.families import DEFAULT_FAMILY, FAMILIES_BY_KEY, FAMILY_DEFAULTS, FAMILY_LABELS, family_key
from lib_lcm.params import (
    ELEM_PREFIX,
    INFOTEXT_VARIANT,
    PARAMS,
    PARAMS_BY_KEY,
    SAMPLERS_BY_MODE,
    SCRIPT_TITLE,
)
from lib_lcm.weights import registry
from lib_lcm_webui import live_ui, settings
from lib_lcm_webui.compat import host_page
from lib_lcm_webui.live_ui import LIVE_CUT, LIVE_CUT_TASK, LIVE_REQUEST, LIVE_RUN, LIVE_SWITCH
from lib_lcm_webui.status import PLACEHOLDER, on_download_click, refresh_status, status_html

# The host's controls the page logic switches (host_page.HOST_CONTROLS; those the tab has: hires controls exist in
# txt2img only, schedule types from 1.9 on).
PANEL_HOST_CONTROLS = ("prompt", "sampler", "scheduler", "host_steps", "host_cfg_scale", "hr_sampler", "hr_scheduler",
                       "hr_steps")
# What the host controls that do not follow a panel value are set to while the panel is on: our samplers make
# their own schedule, and the hires pass follows the first pass (Hires steps 0 = the same step count).
FIXED_TARGETS = {"scheduler": "Automatic", "hr_sampler": "Use same sampler", "hr_scheduler": "Use same scheduler",
                 "hr_steps": 0}
# The panel's own values the page logic reads, in this order, before the host's controls.
PANEL_INPUTS = ("enabled", "steps", "cfg_scale", "weight", "mode", "status")

# "Send to img2img / inpaint" copies, from txt2img, the components whose field names are in paste_field_names.
# These names never appear in an infotext, so pasting parameters leaves them to the fields read from it.
SEND_TO_FIELDS = {"enabled": "LCM-LoRA enabled", "steps": "LCM-LoRA steps", "cfg_scale": "LCM-LoRA CFG",
                  "family": "LCM-LoRA family choice"}

HIRES_NOTE = (
    "While on, the tab's Sampling method, Schedule type, Sampling steps and CFG Scale follow this panel and "
    "the prompt gets the LCM-LoRA tag; switching off restores them. Hires fix: the second pass uses the same "
    "sampler and steps (Hires steps 0)."
)


def elem_id(tab: str, key: str) -> str:
    return f"{ELEM_PREFIX}_{tab}_{key}"


def host_elem_ids(tab: str) -> dict:
    """{page-logic name: the host component's elem_id} for one tab."""
    return host_page.host_elem_ids(tab, PANEL_HOST_CONTROLS)


def _initial_values() -> dict:
    try:
        defaults = settings.panel_defaults()
    except Exception:  # settings not registered yet (first start): use the table's defaults
        defaults = {}
    return {param.key: defaults.get(param.key, param.default) for param in PARAMS}


def _component(param, tab, value, **kwargs):
    common = {"label": param.label, "elem_id": elem_id(tab, param.key), **kwargs}
    if param.key in LIVE_REQUEST:
        # Never shown: the page sets it in the live request's arguments (lib_lcm_webui/live_ui.py).
        common["visible"] = False
    if param.labels:  # shown by label; parse_script_args reads a label back as its choice
        labels = dict(zip(param.choices, param.labels, strict=True))
        return gr.Radio(choices=list(param.labels), value=labels.get(value, value), **common)
    if param.choices:
        return gr.Radio(choices=list(param.choices), value=value, **common)
    if param.kind is bool:
        return gr.Checkbox(value=value, **common)
    if param.key in LIVE_REQUEST:
        return gr.Number(value=value, precision=0, **common)
    return gr.Slider(minimum=param.minimum, maximum=param.maximum, step=param.step, value=value,
                     info=param.info or None, **common)


def _switch_and_container(tab):
    """The on/off switch and the block the panel's controls go in: an InputAccordion where the host has one,
    else a checkbox inside a plain accordion."""
    if InputAccordion is not None:
        enabled = InputAccordion(False, label=SCRIPT_TITLE, elem_id=elem_id(tab, "enabled"))
        return enabled, enabled
    return None, gr.Accordion(SCRIPT_TITLE, open=False, elem_id=elem_id(tab, "accordion"))


def _panel_controls(tab, values, components):
    rows = (("family",), ("steps", "cfg_scale"), ("weight", "mode", "gamma"))
    visible = control_visibility(values["family"], values["mode"])
    for keys in rows:
        with gr.Row(elem_classes=["lcm-lora-row"]):
            for key in keys:
                extra = {"visible": visible[key]} if key in visible else {}
                components[key] = _component(PARAMS_BY_KEY[key], tab, values[key], **extra)
    with gr.Row(elem_classes=["lcm-lora-row"]):
        components[LIVE_SWITCH] = gr.Checkbox(False, label="Live: a new image after every edit",
                                              elem_id=elem_id(tab, LIVE_SWITCH))
        components["fast_decode"] = _component(PARAMS_BY_KEY["fast_decode"], tab, values["fast_decode"])
        for key in LIVE_REQUEST:
            components[key] = _component(PARAMS_BY_KEY[key], tab, PARAMS_BY_KEY[key].default)
        components[LIVE_RUN] = gr.Button("Live image", visible=False, elem_id=elem_id(tab, LIVE_RUN))
        components[LIVE_CUT] = gr.Button("Stop live image", visible=False, elem_id=elem_id(tab, LIVE_CUT))
        components[LIVE_CUT_TASK] = gr.Textbox("", visible=False, elem_id=elem_id(tab, LIVE_CUT_TASK))
    with gr.Row(elem_classes=["lcm-lora-row"]):
        components["status"] = gr.HTML(value=status_html(PLACEHOLDER), elem_id=elem_id(tab, "status"))
        download = gr.Button("Download LCM-LoRA", visible=False, elem_id=elem_id(tab, "download"),
                             elem_classes=["lcm-lora-download"])
        # Clicked by the page (javascript/lcm_lora_panel.js finds it by its class).
        refresh = components["refresh"] = gr.Button("Refresh", visible=False, elem_id=elem_id(tab, "refresh"),
                                                    elem_classes=["lcm-lora-refresh"])
    gr.HTML(value=f'<p class="lcm-lora-note">{html.escape(HIRES_NOTE)}</p>', elem_id=elem_id(tab, "note"))
    return download, refresh


def build_panel(script, is_img2img: bool):
    """Build the panel; returns its inputs in PARAMS order (that order is the API's positional order)."""
    tab = "img2img" if is_img2img else "txt2img"
    values = _initial_values()
    components = {}
    enabled, container = _switch_and_container(tab)
    with container:
        if enabled is None:
            enabled = gr.Checkbox(False, label=PARAMS_BY_KEY["enabled"].label, elem_id=elem_id(tab, "enabled"))
        components["enabled"] = enabled
        download, refresh = _panel_controls(tab, values, components)

    _wire_panel(components, download, refresh)
    script.on_after_component(lambda _: _wire_page_logic(tab, components),
                              elem_id=host_page.elem(host_page.INFOTEXT, tab))
    script.on_after_component(lambda _: live_ui.wire_live(tab, components),
                              elem_id=host_page.elem(host_page.AFTER_GENERATE_EVENT, tab))
    script.infotext_fields = infotext_fields(components)
    # The family's infotext is read by a function (an LCM-LoRA image has none): "Send to" copies it by its own name.
    script.paste_field_names = [param.infotext for param in PARAMS if param.infotext and param.key != "family"] + list(
        SEND_TO_FIELDS.values())
    return [components[param.key] for param in PARAMS]


def control_visibility(family, mode) -> dict:
    """The sampler mode is LCM-LoRA's own; gamma is TCD's (LCM-LoRA in TCD mode, or the TCD family)."""
    family = family_key(family) or DEFAULT_FAMILY
    return {"mode": family == DEFAULT_FAMILY,
            "gamma": (family == DEFAULT_FAMILY and mode == "TCD") or family == "tcd"}


def on_family_change(family, mode):
    """Picking a family sets its steps, CFG and weight (lib_lcm.families), and shows the controls it uses."""
    chosen = FAMILIES_BY_KEY[family_key(family) or DEFAULT_FAMILY]
    visible = control_visibility(family, mode)
    return (*(gr.update(value=getattr(chosen, key)) for key in FAMILY_DEFAULTS),
            gr.update(visible=visible["mode"]), gr.update(visible=visible["gamma"]))


def _wire_panel(components, download, refresh):
    """Server-side events: the status line (on enable, on a family or step change, on request from the page,
    after a download); a family's defaults when it is picked."""
    status_outputs = [components["status"], download]
    chosen = [components["family"], components["steps"]]
    components["enabled"].change(fn=refresh_status, inputs=chosen, outputs=status_outputs, show_progress=False)
    refresh.click(fn=refresh_status, inputs=chosen, outputs=status_outputs, show_progress=False)
    download.click(fn=on_download_click, inputs=chosen, outputs=status_outputs, show_progress=False)
    components["family"].change(
        fn=on_family_change, inputs=[components["family"], components["mode"]],
        outputs=[*(components[key] for key in FAMILY_DEFAULTS), components["mode"], components["gamma"]],
        show_progress=False)
    for key in ("family", "steps"):  # the file (and its recipe) follows the family and the step count
        components[key].change(fn=refresh_status, inputs=chosen, outputs=status_outputs, show_progress=False)
    components["mode"].change(fn=None, _js="lcmLoraPanel.gammaVisibility", inputs=[components["mode"]],
                              outputs=[components["gamma"]], show_progress=False)


def page_config(tab: str, input_names, output_names) -> dict:
    """What javascript/lcm_lora_panel.js needs to know, from the one home of each fact."""
    return {"tab": tab, "inputs": list(input_names), "outputs": list(output_names),
            "samplers": dict(SAMPLERS_BY_MODE), "stems": list(registry.stems(family=None)),
            "fixed": dict(FIXED_TARGETS)}


def page_logic_js(tab: str, input_names, output_names) -> str:
    """The `_js` of the page-logic events: one call into javascript/lcm_lora_panel.js with its configuration."""
    return f"(...args) => lcmLoraPanel.handle({json.dumps(page_config(tab, input_names, output_names))}, args)"


def _wire_page_logic(tab, components) -> None:
    """Connect the panel to the tab's own controls (once they all exist)."""
    host = host_page.find_components(host_elem_ids(tab))
    if "prompt" not in host:
        print(f"LCM-LoRA: the {tab} prompt box was not found; the panel will not edit the tab's controls")
        return
    event = {
        "fn": None,
        "_js": page_logic_js(tab, list(PANEL_INPUTS) + list(host), list(host)),
        "inputs": [components[name] for name in PANEL_INPUTS] + list(host.values()),
        "outputs": list(host.values()),
        "show_progress": False,
    }
    for key in PANEL_INPUTS:
        components[key].change(**event)


# -- infotext and paste ----------------------------------------------------------------------------------


def infotext_fields(components: dict):
    """Pasting an LCM-LoRA image's infotext turns the panel on and restores its values.

    The panel's own infotext keys are given as strings: the host then counts them as handled and does not
    also offer "TCD gamma" as an override of the settings-page default. SEND_TO_FIELDS name the panel's
    switch, steps and CFG for the host's "Send to" buttons, which copy components by field name.
    """

    def when_lcm(key, convert=lambda v: v):
        def read(params):
            if INFOTEXT_VARIANT not in params or key not in params:
                return gr.update()
            return convert(params[key])
        return read

    def family_label(params):
        # An LCM-LoRA image's infotext has no family key: pasting it picks LCM-LoRA again.
        if INFOTEXT_VARIANT not in params:
            return gr.update()
        return FAMILY_LABELS.get(family_key(params.get(PARAMS_BY_KEY["family"].infotext, "")) or DEFAULT_FAMILY)

    fields = [(components["enabled"], lambda params: INFOTEXT_VARIANT in params)]
    fields.append((components["family"], family_label))
    fields.append((components["steps"], when_lcm("Steps", int)))
    fields.append((components["cfg_scale"], when_lcm("CFG scale", float)))
    for param in PARAMS:
        if param.infotext and param.key != "family":
            fields.append((components[param.key], param.infotext))
    fields.extend((components[key], name) for key, name in SEND_TO_FIELDS.items())
    return fields
