"""Live in the page: the switch, which edits make a new image, and the live request itself.

javascript/lcm_lora_live.js runs Live (latest wins, the adaptive wait, the seed drawn once); the switch and the
edits are page-side events (`fn=None`), so typing costs the server nothing until an image is due.

A live image is a gradio event of this extension's own, on a hidden button: the tab's own Generate event (its
server function, inputs, outputs and page function, read from the Blocks being built) with the `live` and
`live_seed` args set by the page, then `.then()` back to the page. So the page learns that the image is done when
its result arrives, from the request itself: no polling, no minimum duration; the host's Generate button stays an
ordinary click (its `live` field is never set). The host's submit function runs without its progress polling; a
slow live image shows the host's progress bar (javascript/lcm_lora_host.js).
"""
from __future__ import annotations

import functools
import json

from lib_lcm.weights.registry import stems
from lib_lcm_webui import live
from lib_lcm_webui.compat import host_page
from lib_lcm_webui.console import say_once

LIVE_SWITCH = "live_switch"  # the panel's Live switch: page state, not a script arg
LIVE_RUN = "live_run"  # the hidden button the page clicks for a live image
LIVE_CUT = "live_cut"  # the hidden button the page clicks to interrupt its own running live image
LIVE_CUT_TASK = "live_cut_task"  # hidden: that image's task id, set by the page
LIVE_REQUEST = ("live", "live_seed")  # script args only the page sets, per request (never shown)
# The panel's values that change a live image.
LIVE_PANEL_EDITS = ("family", "steps", "cfg_scale", "weight", "mode", "gamma", "fast_decode")
# The host's controls that change a live image (host_page.HOST_CONTROLS; those the tab has).
LIVE_HOST_EDITS = ("prompt", "negative", "seed", "width", "height", "denoising", "image", "sketch", "inpaint",
                   "inpaint_sketch", "inpaint_upload", "inpaint_mask")


def live_config(tab: str, watched, components: dict, generate: host_page.HostEvent) -> dict:
    """What javascript/lcm_lora_live.js needs to know for one tab: the watched names, the LoRA stems, the elem_ids
    of the panel's parts it clicks, the host's submit function and where the live args sit in its arguments."""
    request = {key: generate.inputs.index(components[key]) for key in LIVE_REQUEST}
    return {"tab": tab, "watched": list(watched), "stems": list(stems()),
            "ids": {key: components[key].elem_id for key in (LIVE_RUN, LIVE_CUT, "refresh")},
            "submit": generate.js, "args": request}


def _js(function: str, config: dict, *extra: str) -> str:
    args = ", ".join((json.dumps(config), *extra))
    return f"(...args) => lcmLoraLive.{function}({args}, args)"


def unavailable(tab: str, components: dict, why: str) -> None:
    """Live cannot work in this tab: its switch is not shown, and the console says why once."""
    components[LIVE_SWITCH].visible = False
    say_once(f"LCM-LoRA: Live is off in {tab}: {why}")


def wire_live(tab: str, components: dict) -> None:
    """Called once the host registered its Generate event (host_page.AFTER_GENERATE_EVENT): the live request, the
    switch and the edits that change the image."""
    generate = host_page.generate_event(tab)
    if generate is None:
        unavailable(tab, components, "the tab's Generate event (a server function and a page function) was not "
                                     "found")
        return
    if any(components[key] not in generate.inputs for key in LIVE_REQUEST):
        unavailable(tab, components, "the tab's Generate event does not take this extension's arguments")
        return
    host = host_page.find_components(host_page.host_elem_ids(tab, LIVE_HOST_EDITS))
    watched = {**{key: components[key] for key in LIVE_PANEL_EDITS}, **host}
    config = live_config(tab, watched, components, generate)
    _wire_request(components[LIVE_RUN], generate, config)
    _wire_cut(components[LIVE_CUT], components[LIVE_CUT_TASK], config)
    switch, enabled = components[LIVE_SWITCH], components["enabled"]
    quiet = {"fn": None, "show_progress": False}
    switch.change(_js=_js("switched", config), inputs=[switch, *watched.values()], outputs=[enabled], **quiet)
    enabled.change(_js=_js("panelSwitched", config), inputs=[enabled], outputs=[switch], **quiet)
    for name, component in watched.items():
        component.change(_js=_js("edited", config, json.dumps(name)), inputs=[component], outputs=[], **quiet)


def _shown_unless_interrupted(generate: host_page.HostEvent):
    """The tab's generation for a live request. An interrupted live image (Live cut it short because edits made it
    stale, Live was switched off, or the user pressed Interrupt) answers "no change" for every output: the image
    on screen stays until the next one, instead of a half-denoised one in between. The generation notes that it
    was interrupted under its task id, the request's first argument (live.note_if_interrupted)."""
    unchanged = tuple({"__type__": "update"} for _ in generate.outputs)  # gr.update() on gradio 3.41 and 4

    # wraps: gradio reads the host function's signature (through __wrapped__) to pass it the request.
    @functools.wraps(generate.fn)
    def live_generation(*args):
        result = generate.fn(*args)
        return unchanged if args and live.take_interrupted(args[0]) else result

    return live_generation


def _wire_request(run, generate: host_page.HostEvent, config: dict) -> None:
    """The live request: the host's generation on the hidden button, then back to the page when it is over
    (`.then` runs after an error too). Outside gradio's queue: one HTTP request instead of the queue's websocket
    handshake (join, hash, estimation, data, start: ~170 ms of a 64x64 image's ~0.9 s on A1111 1.10.1, measured
    in the page); the host's generation takes its own lock (`queue_lock`), so a click on Generate still waits for
    a live image and the reverse."""
    request = run.click(fn=_shown_unless_interrupted(generate), _js=_js("submit", config), inputs=generate.inputs,
                        outputs=generate.outputs, show_progress=False, api_name=False, queue=False)
    request.then(fn=None, _js=_js("ended", config), inputs=[], outputs=[], show_progress=False)


def _wire_cut(cut, task, config: dict) -> None:
    """The page's cut of its running live image: the task id of that image (set by the page), and the host is
    interrupted only while it runs that task (live.interrupt_task)."""
    cut.click(fn=live.interrupt_task, _js=_js("cutTask", config), inputs=[task], outputs=[], show_progress=False,
              api_name=False, queue=False)
