"""WebUI glue: the "LCM-LoRA" panel, its status line, its settings section and its infotext/paste wiring.

The panel's components are returned in PARAMS order (the API's positional order). What the page does when
the panel is switched on or off (the tab's own sampler, schedule type, steps, CFG, hires controls and the
`<lora:...>` tag) is decided in the browser by javascript/lcm_lora_panel.js; gradio hands it the current
values and applies the values it returns, so no request reaches the server for it.

gradio and `modules` are imported inside functions: this file is only called while the WebUI builds its UI.
"""
from __future__ import annotations

import html
import json
import threading
from dataclasses import dataclass, replace

from lib_lcm import webui_compat
from lib_lcm.params import ELEM_PREFIX, INFOTEXT_VARIANT, PARAMS, SCRIPT_TITLE

SETTINGS_SECTION = ("lcm_lora", "LCM-LoRA")
DOWNLOAD_POLICIES = ("On first use", "Never (place the files yourself)")

# The host's controls the page logic switches, by the name javascript/lcm_lora_panel.js knows them under.
# (`{tab}` is txt2img or img2img; hires controls exist in txt2img only, schedule types from 1.9 on.)
HOST_CONTROLS = (
    ("prompt", "{tab}_prompt"),
    ("sampler", "{tab}_sampling"),
    ("scheduler", "{tab}_scheduler"),
    ("host_steps", "{tab}_steps"),
    ("host_cfg_scale", "{tab}_cfg_scale"),
    ("hr_sampler", "hr_sampler"),
    ("hr_scheduler", "hr_scheduler"),
    ("hr_steps", "txt2img_hires_steps"),
)
HIRES_CONTROLS = ("hr_sampler", "hr_scheduler", "hr_steps")
# The panel's own values the page logic reads, in this order, before the host's controls.
PANEL_INPUTS = ("enabled", "steps", "cfg_scale", "weight", "mode", "status")

# "Send to img2img / inpaint" copies, from txt2img, the components whose field names are in paste_field_names.
# These names never appear in an infotext, so pasting parameters leaves them to the fields read from it.
SEND_TO_FIELDS = {"enabled": "LCM-LoRA enabled", "steps": "LCM-LoRA steps", "cfg_scale": "LCM-LoRA CFG"}

HIRES_NOTE = (
    "While on, the tab's Sampling method, Schedule type, Sampling steps and CFG Scale follow this panel and "
    "the prompt gets the LCM-LoRA tag; switching off restores them. Hires fix: the second pass uses the same "
    "sampler and steps (Hires steps 0)."
)


def elem_id(tab: str, key: str) -> str:
    return f"{ELEM_PREFIX}_{tab}_{key}"


def host_elem_ids(tab: str) -> dict:
    """{page-logic name: the host component's elem_id} for one tab."""
    ids = {}
    for name, pattern in HOST_CONTROLS:
        if tab != "txt2img" and name in HIRES_CONTROLS:
            continue
        ids[name] = pattern.format(tab=tab)
    return ids


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


# -- status line ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelStatus:
    """What the status line says: the loaded checkpoint, its LCM-LoRA file and whether that file is there.

    `stem` is None when the checkpoint has no LCM-LoRA (or no checkpoint is loaded); `problem` is a message
    that replaces the usual text (unsupported checkpoint, download error, ...); `checked` is False for the
    placeholder shown before the server has looked.
    """

    checkpoint: str | None = None
    architecture: str | None = None
    variant: str | None = None
    stem: str | None = None
    installed: bool = False
    verified: bool = False
    problem: str | None = None
    progress: str | None = None
    checked: bool = True

    @property
    def needs_download(self) -> bool:
        return self.stem is not None and not self.installed


def panel_status(sd_model, lora_dir, registry=None) -> PanelStatus:
    """Status for `sd_model` (None: nothing loaded) with the files under `lora_dir`."""
    from lib_lcm import webui_processing, weights

    if sd_model is None:
        return PanelStatus(problem="No checkpoint is loaded yet.")
    found = webui_processing.detect_loaded_checkpoint(sd_model)
    if found.stem is None:
        return PanelStatus(found.checkpoint, found.architecture)
    try:
        rows = weights.weights_status(lora_dir, registry)
    except weights.WeightsError as e:
        return PanelStatus(found.checkpoint, found.architecture, found.variant, found.stem, problem=str(e))
    row = next((row for row in rows if row["variant"] == found.variant), None)
    if row is None:
        return PanelStatus(found.checkpoint, found.architecture, found.variant, found.stem,
                           problem=f"The weights registry has no entry for {found.variant}.")
    return PanelStatus(found.checkpoint, found.architecture, found.variant, row["stem"] or found.stem,
                       installed=bool(row["installed"]), verified=bool(row["verified"]))


def status_html(status: PanelStatus) -> str:
    """The status line; `data-lcm-stem` tells the page logic which `<lora:STEM>` to write ("" = none; no
    attribute = not known yet)."""
    from lib_lcm.webui_processing import ARCHITECTURE_NAMES

    stem = status.stem or ""
    attrs = 'class="lcm-lora-status"'
    if status.checked:
        attrs += f' data-lcm-stem="{html.escape(stem)}" data-lcm-installed="{str(status.installed).lower()}"'
    parts = []
    if status.checkpoint:
        family = ARCHITECTURE_NAMES.get(status.architecture or "", status.architecture or "")
        parts.append(f"Checkpoint <b>{html.escape(status.checkpoint)}</b> ({html.escape(family)})")
    if status.problem:
        parts.append(f'<span class="lcm-lora-problem">{html.escape(status.problem)}</span>')
    elif status.checkpoint and not stem:
        parts.append('<span class="lcm-lora-problem">LCM-LoRA is not supported for this model (it exists for '
                     "SD 1.5, SDXL and SSD-1B and their inpainting models).</span>")
    elif stem:
        if status.installed:
            state = "installed, verified" if status.verified else "installed"
            parts.append(f"uses <code>{html.escape(stem)}</code>: {state}.")
        elif status.progress:
            parts.append(f"uses <code>{html.escape(stem)}</code>:")
        else:
            parts.append(f"uses <code>{html.escape(stem)}</code>: not installed yet "
                         "(downloaded on first use, or press Download).")
    if status.progress:
        parts.append(f'<span class="lcm-lora-progress">{html.escape(status.progress)}</span>')
    return f"<div {attrs}>{' '.join(parts)}</div>"


def current_status(problem: str | None = None) -> PanelStatus:
    """Status for the WebUI's loaded checkpoint (waits while the host is still loading it); `problem`
    replaces the usual text."""
    from modules import sd_models, shared

    try:
        sd_model = webui_compat.describable_model(shared.sd_model, sd_models)
    except Exception as e:  # the host failed to load any checkpoint
        return PanelStatus(problem=f"No checkpoint is loaded ({e}).")
    status = panel_status(sd_model, shared.cmd_opts.lora_dir)
    return replace(status, problem=problem) if problem else status


def _status_outputs(status: PanelStatus):
    import gradio as gr

    return status_html(status), gr.update(visible=status.needs_download and not status.progress)


def refresh_status():
    return _status_outputs(current_status())


def download_weights():
    """Generator for the Download button: the status line shows the progress, then the result.

    A click is the user's consent, so this downloads whatever the settings' download policy says.
    """
    from modules import shared

    from lib_lcm import download, weights

    status = current_status()
    if not status.needs_download:
        yield _status_outputs(status)
        return
    seen = {"text": "Starting the download..."}
    outcome = {}

    def progress(done: int, total):
        if total:
            seen["text"] = f"Downloading {status.stem}: {done / total:.0%} of {total / 2**20:.0f} MB"
        else:
            seen["text"] = f"Downloading {status.stem}: {done / 2**20:.0f} MB"

    def run():
        try:
            download.ensure_weights(status.variant, shared.cmd_opts.lora_dir, progress=progress)
        except weights.WeightsError as e:
            outcome["error"] = str(e)
        except Exception as e:  # shown in the panel: a traceback in the console helps no one here
            outcome["error"] = f"Download failed: {e}"

    worker = threading.Thread(target=run, name="lcm-lora-download", daemon=True)
    worker.start()
    while worker.is_alive():
        yield _status_outputs(replace(status, progress=seen["text"]))
        worker.join(timeout=0.5)
    yield _status_outputs(current_status(problem=outcome.get("error")))


# -- panel ----------------------------------------------------------------------------------------------


def _component(gr, param, tab, value, **kwargs):
    common = {"label": param.label, "elem_id": elem_id(tab, param.key), **kwargs}
    if param.choices:
        return gr.Radio(choices=list(param.choices), value=value, **common)
    return gr.Slider(minimum=param.minimum, maximum=param.maximum, step=param.step, value=value,
                     info=param.info or None, **common)


def build_panel(script, is_img2img: bool):
    """Build the panel; returns its inputs in PARAMS order (that order is the API's positional order)."""
    import gradio as gr

    tab = "img2img" if is_img2img else "txt2img"
    try:
        defaults = default_settings()
    except Exception:  # settings not registered yet (first start): use the table's defaults
        defaults = {}
    values = {param.key: defaults.get(param.key, param.default) for param in PARAMS}
    components = {}
    accordion = webui_compat.input_accordion()
    if accordion is not None:
        enabled = accordion(False, label=SCRIPT_TITLE, elem_id=elem_id(tab, "enabled"))
        container = enabled
    else:  # a host without InputAccordion: checkbox inside a plain accordion
        container = gr.Accordion(SCRIPT_TITLE, open=False, elem_id=elem_id(tab, "accordion"))
    with container:
        if accordion is None:
            enabled = gr.Checkbox(False, label=PARAMS[0].label, elem_id=elem_id(tab, "enabled"))
        components["enabled"] = enabled
        with gr.Row(elem_classes=["lcm-lora-row"]):
            for key in ("steps", "cfg_scale"):
                components[key] = _component(gr, _param(key), tab, values[key])
        with gr.Row(elem_classes=["lcm-lora-row"]):
            for key in ("weight", "mode"):
                components[key] = _component(gr, _param(key), tab, values[key])
            components["gamma"] = _component(gr, _param("gamma"), tab, values["gamma"],
                                             visible=values["mode"] == "TCD")
        with gr.Row(elem_classes=["lcm-lora-row"]):
            status = gr.HTML(value=status_html(PanelStatus(problem="Checking the loaded checkpoint...", checked=False)),
                             elem_id=elem_id(tab, "status"))
            download = gr.Button("Download LCM-LoRA", visible=False, elem_id=elem_id(tab, "download"),
                                 elem_classes=["lcm-lora-download"])
            refresh = gr.Button("Refresh", visible=False, elem_id=elem_id(tab, "refresh"))
        gr.HTML(value=f'<p class="lcm-lora-note">{html.escape(HIRES_NOTE)}</p>', elem_id=elem_id(tab, "note"))

    components["status"] = status
    _wire_panel(gr, components, download, refresh)
    script.on_after_component(lambda _: _wire_page_logic(tab, components), elem_id=f"generation_info_{tab}")

    script.infotext_fields = infotext_fields(components)
    script.paste_field_names = [param.infotext for param in PARAMS if param.infotext] + list(SEND_TO_FIELDS.values())
    return [components[param.key] for param in PARAMS]


def _param(key):
    return next(param for param in PARAMS if param.key == key)


def _wire_panel(gr, components, download, refresh):
    """Server-side events: the status line (on enable, on request from the page, after a download)."""
    status_outputs = [components["status"], download]
    components["enabled"].change(fn=refresh_status, inputs=[], outputs=status_outputs, show_progress=False)
    refresh.click(fn=refresh_status, inputs=[], outputs=status_outputs, show_progress=False)
    download.click(fn=download_weights, inputs=[], outputs=status_outputs, show_progress=False)
    components["mode"].change(fn=None, _js="lcmLoraPanel.gammaVisibility", inputs=[components["mode"]],
                              outputs=[components["gamma"]], show_progress=False)


def page_logic_js(tab: str, input_names, output_names) -> str:
    """The `_js` of the page-logic events: one call into javascript/lcm_lora_panel.js with its configuration."""
    from lib_lcm.webui_sampler import SAMPLER_LCM, SAMPLER_TCD

    config = {"tab": tab, "inputs": list(input_names), "outputs": list(output_names),
              "samplers": {"LCM": SAMPLER_LCM, "TCD": SAMPLER_TCD}}
    return f"(...args) => lcmLoraPanel.handle({json.dumps(config)}, args)"


def find_components(elem_ids) -> dict:
    """{name: component} for the elem_ids already created in the gradio Blocks being built."""
    from gradio.context import Context

    wanted = {elem: name for name, elem in elem_ids.items()}
    found = {}
    root = Context.root_block
    for block in (root.blocks.values() if root is not None else ()):
        name = wanted.get(getattr(block, "elem_id", None))
        if name is not None:
            found[name] = block
    return {name: found[name] for name in elem_ids if name in found}


def _wire_page_logic(tab, components):
    """Connect the panel to the tab's own controls; called once the tab's controls all exist."""
    host = find_components(host_elem_ids(tab))
    if "prompt" not in host:
        print(f"LCM-LoRA: the {tab} prompt box was not found; the panel will not edit the tab's controls")
        return
    input_names = list(PANEL_INPUTS) + list(host)
    output_names = list(host)
    event = {
        "fn": None,
        "_js": page_logic_js(tab, input_names, output_names),
        "inputs": [components[name] for name in PANEL_INPUTS] + list(host.values()),
        "outputs": list(host.values()),
        "show_progress": False,
    }
    for key in ("enabled", "steps", "cfg_scale", "weight", "mode", "status"):
        components[key].change(**event)


# -- infotext, paste, settings ---------------------------------------------------------------------------


def infotext_fields(components: dict):
    """Pasting an LCM-LoRA image's infotext turns the panel on and restores its values.

    The panel's own infotext keys are given as strings: the host then counts them as handled and does not
    also offer "TCD gamma" as an override of the settings-page default. SEND_TO_FIELDS name the panel's
    switch, steps and CFG for the host's "Send to" buttons, which copy components by field name.
    """

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
            fields.append((components[param.key], param.infotext))
    fields.extend((components[key], name) for key, name in SEND_TO_FIELDS.items())
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
        webui_compat.add_option(key, info)
