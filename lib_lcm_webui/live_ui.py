"""Live in the page: the switch, and which edits make a new image.

javascript/lcm_lora_live.js runs Live (latest wins, the adaptive wait, the seed drawn once); this module only
wires gradio events to it, all page-side (`fn=None`), so typing costs the server nothing until an image is due.
A live image is requested by clicking the tab's own Generate button with the hidden `live` / `live_seed` fields
set: the host's usual request, progress, result and infotext, and the server knows it is a live one.
"""
from __future__ import annotations

import json

from lib_lcm.params import ELEM_PREFIX
from lib_lcm.weights.registry import stems

LIVE_SWITCH = "live_switch"  # the panel's Live switch: page state, not a script arg
LIVE_REQUEST = ("live", "live_seed")  # script args only the page sets, per request (hidden in the panel)
# The panel's values that change a live image.
LIVE_PANEL_EDITS = ("steps", "cfg_scale", "weight", "mode", "gamma", "fast_decode")
# The host's controls that change a live image, by the name the page knows them under (those a tab has).
LIVE_HOST_EDITS = (
    ("prompt", "{tab}_prompt"),
    ("negative", "{tab}_neg_prompt"),
    ("seed", "{tab}_seed"),
    ("width", "{tab}_width"),
    ("height", "{tab}_height"),
    ("denoising", "img2img_denoising_strength"),
    ("image", "img2img_image"),
    ("sketch", "img2img_sketch"),
    ("inpaint", "img2maskimg"),
    ("inpaint_sketch", "inpaint_sketch"),
    ("inpaint_upload", "img_inpaint_base"),
    ("inpaint_mask", "img_inpaint_mask"),
)
# The host's buttons the page clicks.
HOST_BUTTONS = {"generate": "{tab}_generate", "interrupt": "{tab}_interrupt"}


def _ids(tab: str, pairs) -> dict:
    return {name: pattern.format(tab=tab) for name, pattern in pairs
            if "{tab}" in pattern or tab == "img2img"}


def live_config(tab: str, watched) -> dict:
    """What javascript/lcm_lora_live.js needs to know for one tab."""
    own = {key: f"{ELEM_PREFIX}_{tab}_{key}" for key in (*LIVE_REQUEST, "fast_decode", "refresh")}
    return {"tab": tab, "watched": list(watched), "stems": list(stems()), "ids": own,
            "host": {name: pattern.format(tab=tab) for name, pattern in HOST_BUTTONS.items()}}


def _js(function: str, config: dict, *extra: str) -> str:
    args = ", ".join((json.dumps(config), *extra))
    return f"(...args) => lcmLoraLive.{function}({args}, args)"


def wire_live(tab: str, components: dict, find_components) -> None:
    """Connect the Live switch and the edits that change the image to the page's Live logic. The end of an image
    is seen by the page itself (the host hides its Interrupt button): gradio 3.41's Gallery has no change event,
    the hidden generation info is not rendered, and the log line also changes while an image starts (an image
    counted as ended at once, in the browser test)."""
    host = find_components(_ids(tab, LIVE_HOST_EDITS))
    watched = {**{key: components[key] for key in LIVE_PANEL_EDITS}, **host}
    config = live_config(tab, watched)
    switch, enabled = components[LIVE_SWITCH], components["enabled"]
    quiet = {"fn": None, "show_progress": False}
    switch.change(_js=_js("switched", config), inputs=[switch, *watched.values()], outputs=[enabled], **quiet)
    enabled.change(_js=_js("panelSwitched", config), inputs=[enabled], outputs=[switch], **quiet)
    for name, component in watched.items():
        component.change(_js=_js("edited", config, json.dumps(name)), inputs=[component], outputs=[], **quiet)
