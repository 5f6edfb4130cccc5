"""What makes a generation a live one (the panel's Live switch, or `"live": true` from the API).

A live image exists to be replaced by the next one: it is not saved to the outputs folders (the gallery's Save
button still saves the one on screen), it is one image (batch size 1, one batch), the host shows no per-step
previews for it, and with Fast decode it is decoded by the host's TAESD decoder. A seed of -1 becomes the seed
Live drew when it was switched on, so the image changes only because the user changed something.

The host applies `p.override_settings` after the scripts' before_process and puts the options back afterwards,
but only those already in `opts.data`; before 1.7 a default-valued option is not there, so its default is put
there first (same value) and the host's own restore covers it.

Fast decode is decided in two steps: before_process asks for TAESD (the last moment an override can be set), and
process, once the host has loaded the checkpoint this image uses, checks that the host can load the TAESD decoder
for it and otherwise switches this image back to the full VAE. The host's loader reads the loaded model (SD, SDXL,
SD3 decoder): Forge loads the checkpoint at the first generation, after before_process, and a checkpoint override
loads one there too.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from modules import shared

from lib_lcm.params import LcmSettings
from lib_lcm_webui import settings
from lib_lcm_webui.compat import taesd
from lib_lcm_webui.console import say_once

# How long a live generation waits for the host to load its TAESD decoder (the host downloads the file on first
# use; a silent network must not hold the image up) and how soon a failed load is tried again.
LOAD_WAIT_S = 2.0
RETRY_AFTER_S = 60.0
NO_PREVIEWS = {"live_previews_enable": False}
NO_TAESD = "Fast decode: this WebUI has no TAESD decoder; live images use the full VAE."


@dataclass
class _DecoderLoad:
    """One attempt of the host's TAESD loader, run in a thread of its own."""

    file_state: tuple | None  # the decoder file when the attempt started: a new file is tried at once
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    finished_at: float = 0.0

    def run(self):
        try:
            taesd.load_taesd_decoder()
        except BaseException as e:  # noqa: BLE001 - whatever the host raises, the image falls back to the full VAE
            self.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        self.finished_at = time.monotonic()
        self.done.set()

    def stale(self, file_state) -> bool:
        """A failed attempt is tried again once the file changed, or after RETRY_AFTER_S."""
        failed = self.done.is_set() and self.error is not None
        return failed and (file_state != self.file_state or time.monotonic() - self.finished_at > RETRY_AFTER_S)


_loads: dict[str, _DecoderLoad] = {}
_notes: dict[str, str] = {}  # the latest fast-decode problem per TAESD model, for the panel's status line
_lock = threading.Lock()
# The task ids of the latest live images that were interrupted (a few: each is taken once by its request).
_interrupted: collections.deque = collections.deque(maxlen=8)


def is_random_seed(seed) -> bool:
    try:
        return seed is None or seed == "" or int(seed) == -1
    except (TypeError, ValueError):
        return False


def prepare_live_generation(p, lcm_settings: LcmSettings) -> None:
    """Script hook part (before_process, after the panel's settings are applied) for a live generation."""
    p.batch_size = 1
    p.n_iter = 1
    if is_random_seed(p.seed) and lcm_settings.live_seed >= 0:
        p.seed = lcm_settings.live_seed
    p.do_not_save_samples = True
    p.do_not_save_grid = True
    if not getattr(p, "override_settings_restore_afterwards", True):
        # The host would keep these options after the generation: leave the user's options alone.
        say_once("LCM-LoRA live: override_settings_restore_afterwards is off, so previews and the decoder are "
                  "left as the settings say")
        return
    overrides = dict(NO_PREVIEWS)
    if lcm_settings.fast_decode:
        if taesd.has_taesd_decode():
            overrides[taesd.DECODE_OPTION] = taesd.TAESD_DECODE  # checked in check_fast_decode
        else:
            p.comment(_note("", NO_TAESD))
    for key in overrides:
        settings.keep_option_for_restore(key)
    p.override_settings = {**(p.override_settings or {}), **overrides}


def check_fast_decode(p) -> None:
    """Script hook part (process: the checkpoint is loaded, the overrides applied) for a live generation that
    asked for TAESD: when the host cannot load the decoder for this checkpoint, the image uses the full VAE
    (until the host restores its options after the generation) and says why."""
    asked = (p.override_settings or {}).get(taesd.DECODE_OPTION) == taesd.TAESD_DECODE
    if not asked or not getattr(p, "override_settings_restore_afterwards", True):
        return
    problem = fast_decoder_problem()
    if problem is not None:
        taesd.decode_with_full_vae()
        p.comment(problem)


def fast_decoder_problem() -> str | None:
    """None when the host's TAESD decoder for the loaded model is ready; else why not (the image then decodes
    with the full VAE). Starts the host's loader (which downloads the file on first use) in a thread and waits
    for it at most LOAD_WAIT_S."""
    key = taesd.taesd_model_key(shared.sd_model)
    if key is None:
        return _note("", NO_TAESD)
    file_state = taesd.taesd_file_state(key)
    with _lock:
        load = _loads.get(key)
        if load is None or load.stale(file_state):
            load = _loads[key] = _DecoderLoad(file_state)
            threading.Thread(target=load.run, name="lcm-lora-taesd", daemon=True).start()
    if not load.done.wait(LOAD_WAIT_S):
        return _note(key, "Fast decode: the WebUI is still loading (or downloading) its TAESD decoder; "
                          "this live image used the full VAE.")
    if load.error:
        return _note(key, f"Fast decode: the WebUI could not load its TAESD decoder ({load.error}); live images "
                          f"use the full VAE. Put {taesd.taesd_file_hint(key)} in place, or turn Fast decode off.")
    _notes.pop(key, None)
    return None


def _note(key: str, message: str) -> str:
    _notes[key] = message
    say_once(f"LCM-LoRA {message}")
    return message


def fast_decode_note() -> str | None:
    """The latest fast-decode problem for the loaded model (shown in the panel's status line), if any."""
    if not _notes:
        return None
    key = taesd.taesd_model_key(shared.sd_model)
    return _notes.get(key if key is not None else "")


def note_if_interrupted() -> None:
    """Script hook part (postprocess) for a live generation: when the host was interrupted during it, remember its
    task id (the host's `state.job`, the request's first argument) for the live request's answer
    (live_ui: an interrupted live image leaves the one on screen). It is noted here because the host resets its
    `interrupted` flag as soon as its call returns, before the request's answer is made."""
    state = shared.state
    if state.interrupted and state.job:
        with _lock:
            _interrupted.append(state.job)


def take_interrupted(task_id) -> bool:
    """Whether the live image of this task id was interrupted (once: the note is taken)."""
    with _lock:
        if task_id in _interrupted:
            _interrupted.remove(task_id)
            return True
    return False


def interrupt_task(task_id) -> None:
    """The page's cut of its own running live image (a stale one, or Live switched off): the host is interrupted
    only while that task is its job. A click on the host's Interrupt button instead could arrive after the stale
    image ended and stop the image started next, the one the user waits for (seen in the bench: the final
    prompt's image stopped at its first step). Between the check and the interrupt another job could begin only
    within those two statements."""
    state = shared.state
    if task_id and state.job == task_id:
        state.interrupt()
