"""What the panel and Live know of the host's page on the Python side: its controls' element ids, where its
Generate event is found, and the gradio Blocks being built. (The JavaScript side: javascript/lcm_lora_host.js.)

Written from A1111 1.6-1.10 and the Forges (gradio 3.41 and 4.x); the browser tests (tests/e2e/test_browser*.py)
run against each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from gradio.context import Context

TABS = ("txt2img", "img2img")


@dataclass(frozen=True)
class HostControl:
    """One of the tab's own controls, by the name the page logic knows it under. `elem`: its elem_id (`{tab}`:
    txt2img or img2img); `tab`: the one tab that has it (None: both)."""

    name: str
    elem: str
    tab: str | None = None


HOST_CONTROLS = (
    HostControl("prompt", "{tab}_prompt"),
    HostControl("negative", "{tab}_neg_prompt"),
    HostControl("seed", "{tab}_seed"),
    HostControl("width", "{tab}_width"),
    HostControl("height", "{tab}_height"),
    HostControl("sampler", "{tab}_sampling"),
    HostControl("scheduler", "{tab}_scheduler"),  # schedule types exist from 1.9 on
    HostControl("host_steps", "{tab}_steps"),
    HostControl("host_cfg_scale", "{tab}_cfg_scale"),
    HostControl("hr_sampler", "hr_sampler", "txt2img"),
    HostControl("hr_scheduler", "hr_scheduler", "txt2img"),
    HostControl("hr_steps", "txt2img_hires_steps", "txt2img"),
    HostControl("denoising", "img2img_denoising_strength", "img2img"),
    HostControl("image", "img2img_image", "img2img"),
    HostControl("sketch", "img2img_sketch", "img2img"),
    HostControl("inpaint", "img2maskimg", "img2img"),
    HostControl("inpaint_sketch", "inpaint_sketch", "img2img"),
    HostControl("inpaint_upload", "img_inpaint_base", "img2img"),
    HostControl("inpaint_mask", "img_inpaint_mask", "img2img"),
)
_BY_NAME = {control.name: control for control in HOST_CONTROLS}

# The tab's Generate button: its click event is the host's generation (function, inputs, outputs, page function).
GENERATE = "{tab}_generate"
# The extra networks' "Save preview" button: the first component every host creates after it registered the
# Generate event (ui.py: `toprow.submit.click(...)`, then `ui_extra_networks.create_ui`), in 1.6-1.10 and the Forges.
AFTER_GENERATE_EVENT = "{tab}_save_preview"
# The infotext block: the tab's page logic is wired once it exists (every control the panel follows is made).
INFOTEXT = "generation_info_{tab}"
PAGE_FUNCTION = re.compile(r"[A-Za-z_$][\w$]*")  # the host's submit functions are named globals ("submit")


def elem(pattern: str, tab: str) -> str:
    return pattern.format(tab=tab)


def host_elem_ids(tab: str, names) -> dict:
    """{page-logic name: the host control's elem_id} for the `names` this tab has, in that order."""
    controls = (_BY_NAME[name] for name in names)
    return {control.name: elem(control.elem, tab) for control in controls if control.tab in (None, tab)}


def find_components(elem_ids) -> dict:
    """{name: component} for the elem_ids already created in the gradio Blocks being built."""
    wanted = {elem_id: name for name, elem_id in elem_ids.items()}
    found = {}
    root = Context.root_block
    for block in (root.blocks.values() if root is not None else ()):
        name = wanted.get(getattr(block, "elem_id", None))
        if name is not None:
            found[name] = block
    return {name: found[name] for name in elem_ids if name in found}


@dataclass(frozen=True)
class HostEvent:
    """An event the host registered: its server function, inputs, outputs and page function (`_js`)."""

    fn: object
    inputs: list
    outputs: list
    js: str | None


def generate_event(tab: str) -> HostEvent | None:
    """The tab's generation: of the click events on its Generate button (the Forges' built-in extensions add their
    own), the one that runs a server function through a named page function ("submit", "submit_img2img"), with the
    most inputs if there are several (the host's takes every script's). None: not registered."""
    button = find_components({"generate": elem(GENERATE, tab)}).get("generate")
    if button is None:
        return None
    runs = [event for event in click_events(Context.root_block, button)
            if event.fn is not None and PAGE_FUNCTION.fullmatch(event.js or "")]
    return max(runs, key=lambda event: len(event.inputs), default=None)


def click_events(root, button) -> list[HostEvent]:
    """The click events on `button` in `root`: gradio 4 keeps a dict of functions that name their targets;
    gradio 3.41 two parallel lists, the dependencies (targets, trigger, js) and the functions."""
    fns = getattr(root, "fns", None)
    if isinstance(fns, dict):
        return [HostEvent(fn.fn, list(fn.inputs), list(fn.outputs), fn.js) for fn in fns.values()
                if (button._id, "click") in [tuple(target) for target in fn.targets]]
    return [HostEvent(fn.fn, list(fn.inputs), list(fn.outputs), dependency.get("js"))
            for dependency, fn in zip(getattr(root, "dependencies", ()), fns or (), strict=False)
            if dependency.get("trigger") == "click" and button._id in dependency.get("targets", ())]
