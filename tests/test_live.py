"""Live's server side (lib_lcm_webui.live) and its page wiring (lib_lcm_webui.live_ui) against the fake host
(tests/fake_webui.py). The page logic itself: tests/js/live_logic.test.mjs; the real page:
tests/e2e/test_browser_live.py."""
from __future__ import annotations

import inspect
import json
import re
import threading
import types
from contextlib import contextmanager

import pytest

from lib_lcm.params import parse_script_args
from tests.fake_webui import FakeP, fake_webui

LIVE = parse_script_args([{"live": True, "live_seed": 77}])


class LiveP(FakeP):
    def __init__(self, **kwargs):
        defaults = {"seed": -1, "batch_size": 4, "n_iter": 3, "override_settings": {},
                    "override_settings_restore_afterwards": True, "do_not_save_samples": False,
                    "do_not_save_grid": False}
        super().__init__(**{**defaults, **kwargs})
        self.comments = []

    def comment(self, text):
        self.comments.append(text)


@contextmanager
def live_host(tmp_path, loader=None, with_taesd=True):
    calls = []

    def default_loader():
        calls.append(1)
        return object()

    taesd = (loader or default_loader) if with_taesd else None
    with fake_webui(taesd_loader=taesd, models_path=tmp_path) as host:
        opts = host.shared.opts
        opts.data = {}
        opts.data_labels = {"sd_vae_decode_method": types.SimpleNamespace(default="Full"),
                            "live_previews_enable": types.SimpleNamespace(default=True)}
        if not with_taesd:
            del opts.data_labels["sd_vae_decode_method"]
        from lib_lcm_webui import live

        live._loads.clear()
        live._notes.clear()
        yield types.SimpleNamespace(host=host, live=live, calls=calls)


def generate(env, p, settings=LIVE):
    """The host's order: before_process, its overrides applied (it keeps the options in opts.data to restore them
    afterwards), the checkpoint loaded, process. Returns (the options kept for restore, those the image used)."""
    env.live.prepare_live_generation(p, settings)
    opts = env.host.shared.opts
    kept = dict(opts.data)
    opts.data.update(p.override_settings)
    env.live.check_fast_decode(p)
    return kept, dict(opts.data)


def test_a_live_generation_is_one_unsaved_image_with_the_live_seed_no_previews_and_taesd(tmp_path):
    with live_host(tmp_path) as env:
        p = LiveP()
        kept, used = generate(env, p)
    assert (p.batch_size, p.n_iter, p.seed) == (1, 1, 77)
    assert p.do_not_save_samples is True and p.do_not_save_grid is True
    assert p.override_settings == {"live_previews_enable": False, "sd_vae_decode_method": "TAESD"}
    # The host restores only options in opts.data (1.6 leaves defaults out): ours are put there at their defaults.
    assert kept == {"live_previews_enable": True, "sd_vae_decode_method": "Full"}
    assert used == {"live_previews_enable": False, "sd_vae_decode_method": "TAESD"}
    assert p.comments == [] and env.calls == [1]


def test_the_decoder_is_loaded_after_the_checkpoint_not_before(tmp_path):
    """Forge loads the checkpoint at the first generation, after before_process: the host's TAESD loader reads the
    loaded model, so it runs in process, not before."""
    with live_host(tmp_path) as env:
        p = LiveP()
        env.live.prepare_live_generation(p, LIVE)
        assert env.calls == [] and p.override_settings["sd_vae_decode_method"] == "TAESD"
        env.live.check_fast_decode(p)
    assert env.calls == [1]


def test_an_explicit_seed_and_the_users_overrides_stay(tmp_path):
    with live_host(tmp_path) as env:
        p = LiveP(seed=5, override_settings={"CLIP_stop_at_last_layers": 2})
        generate(env, p)
        generate(env, LiveP())
    assert p.seed == 5
    assert p.override_settings["CLIP_stop_at_last_layers"] == 2
    assert env.calls == [1], "the host's loader runs once; it keeps the decoder itself"


def test_fast_decode_off_keeps_the_full_vae(tmp_path):
    with live_host(tmp_path) as env:
        p = LiveP()
        generate(env, p, parse_script_args([{"live": True, "fast_decode": False}]))
    assert p.override_settings == {"live_previews_enable": False} and env.calls == []
    assert p.seed == -1, "no live seed sent: the host draws one as usual"


def test_when_the_host_cannot_load_taesd_the_image_uses_the_full_vae_and_the_panel_says_why(tmp_path):
    def failing():
        raise FileNotFoundError("TAESD model not found")

    with live_host(tmp_path, loader=failing) as env:
        p = LiveP()
        kept, used = generate(env, p)
        note = env.live.fast_decode_note()
        from lib_lcm_webui import status

        line = status.status_html(status.current_status())
    assert used["sd_vae_decode_method"] == "Full" and used["live_previews_enable"] is False
    assert kept["sd_vae_decode_method"] == "Full", "the host puts the option back as it was"
    assert len(p.comments) == 1 and "could not load its TAESD decoder (FileNotFoundError: TAESD model not found)" \
        in p.comments[0]
    assert "models/VAE-taesd/taesd_decoder.pth" in note and "turn Fast decode off" in note
    assert "could not load its TAESD decoder" in line


def test_a_new_decoder_file_is_tried_at_once(tmp_path):
    attempts = []

    def loader():
        attempts.append(1)
        if not (tmp_path / "VAE-taesd" / "taesd_decoder.pth").is_file():
            raise FileNotFoundError("TAESD model not found")

    with live_host(tmp_path, loader=loader) as env:
        generate(env, LiveP())
        generate(env, LiveP())
        assert len(attempts) == 1, "a failure is remembered while nothing changed"
        (tmp_path / "VAE-taesd").mkdir()
        (tmp_path / "VAE-taesd" / "taesd_decoder.pth").write_bytes(b"x")
        p = LiveP()
        _, used = generate(env, p)
        note = env.live.fast_decode_note()
    assert len(attempts) == 2 and used["sd_vae_decode_method"] == "TAESD" and note is None


def test_a_loader_that_hangs_never_holds_the_image_up(tmp_path, monkeypatch):
    release = threading.Event()

    def hanging():
        release.wait(30)

    with live_host(tmp_path, loader=hanging) as env:
        monkeypatch.setattr(env.live, "LOAD_WAIT_S", 0.05)
        p = LiveP()
        _, used = generate(env, p)
        release.set()
    assert used["sd_vae_decode_method"] == "Full"
    assert "still loading (or downloading)" in p.comments[0]


def test_a_host_without_taesd_says_so(tmp_path):
    with live_host(tmp_path, with_taesd=False) as env:
        p = LiveP()
        generate(env, p)
    assert "no TAESD decoder" in p.comments[0] and "sd_vae_decode_method" not in p.override_settings


def test_without_restore_afterwards_the_users_options_are_left_alone(tmp_path, capsys):
    with live_host(tmp_path) as env:
        p = LiveP(override_settings_restore_afterwards=False)
        generate(env, p)
    assert p.override_settings == {} and (p.batch_size, p.do_not_save_samples) == (1, True)
    assert "override_settings_restore_afterwards is off" in capsys.readouterr().out


def test_the_script_hook_turns_a_live_request_into_a_live_lcm_generation(tmp_path):
    with live_host(tmp_path) as env:
        from lib_lcm_webui import processing, state

        p = LiveP(sampler_name="Euler a", steps=25, cfg_scale=7.0)
        processing.before_process(p, [{"live": True, "live_seed": 9}])
        settings = state.generation_state(p).settings
        assert env.calls == [], "the decoder waits for the checkpoint"
        processing.process(p, env.host.shared.sd_model)
    assert env.calls == [1]
    assert settings.enabled is True and settings.live is True
    assert (p.sampler_name, p.steps, p.cfg_scale, p.seed, p.batch_size) == ("LCM-LoRA", 4, 1.0, 9, 1)


def test_an_ordinary_request_is_not_live(tmp_path):
    with live_host(tmp_path) as env:
        from lib_lcm_webui import processing

        p = LiveP()
        processing.before_process(p, [{"enabled": True}])
    assert (p.batch_size, p.seed, p.do_not_save_samples, p.override_settings) == (4, -1, False, {})
    assert env.calls == []


# -- the page wiring ---------------------------------------------------------------------------------------


def host_generate_event(host, tab, inputs, layout="gradio3"):
    """The tab's Generate button and its click event as the host registers it (ui.py: `_js="submit"`, the tab's
    inputs with every script's, the gallery, infotexts and log as outputs), in one gradio's layout."""
    generate = host.gr.Button(elem_id=f"{tab}_generate")
    generate._id = 101
    outputs = [host.gr.HTML(elem_id=elem) for elem in (f"{tab}_gallery", f"generation_info_{tab}",
                                                       f"html_info_{tab}", f"html_log_{tab}")]
    function = types.SimpleNamespace(fn=lambda id_task, *args: ("images", id_task, *args), inputs=inputs, outputs=outputs,
                                     js="submit", targets=[(generate._id, "click")])
    # Another button's click; on the Forges, their built-in extensions' own clicks on Generate (before the host's).
    other = types.SimpleNamespace(fn=None, inputs=[], outputs=[], js=None, targets=[(7, "click")])
    forge_extra = types.SimpleNamespace(fn=lambda: None, inputs=[], outputs=[], js=None,
                                        targets=[(generate._id, "click")])
    page_only = types.SimpleNamespace(fn=None, inputs=[], outputs=[], js="(x) => x", targets=[(generate._id, "click")])
    functions = [other, forge_extra, page_only, function]
    root = host.ui.root
    if layout == "gradio4":  # a dict of functions naming their targets
        root.fns = dict(enumerate(functions))
    else:  # parallel lists
        root.fns = functions
        root.dependencies = [{"targets": [target for target, _ in f.targets], "trigger": "click", "js": f.js}
                             for f in functions]
    return function


def wired(tab, layout="gradio3", with_event=True):
    from tests.test_panel import FakeScript, glue

    with fake_webui() as host:
        from lib_lcm_webui import live_ui, panel, settings, status
        from lib_lcm_webui.compat import host_page

        glue.modules = (panel, status, settings)
        script = FakeScript()
        inputs = panel.build_panel(script, is_img2img=tab == "img2img")
        made = {control.elem.format(tab=tab): host.gr.Textbox(elem_id=control.elem.format(tab=tab))
                for control in host_page.HOST_CONTROLS}
        script.component_created(f"generation_info_{tab}")
        prompt = made[f"{tab}_prompt"]
        event = host_generate_event(host, tab, [prompt, *inputs], layout) if with_event else None
        script.component_created(f"{tab}_save_preview")
        created = {block.elem_id: block for block in host.ui.created}
        out = types.SimpleNamespace(inputs=inputs, created=created, host=made, event=event, live_ui=live_ui)
    return out


def live_events(component, function):
    return [kw for name, kw in component.events if name in ("change", "click", "then") and
            f"lcmLoraLive.{function}(" in (kw.get("_js") or "")]


def config_of(js):
    prefix = re.match(r"\(\.\.\.args\) => lcmLoraLive\.\w+\(", js).group(0)
    config, _ = json.JSONDecoder().raw_decode(js[len(prefix):])
    return config


@pytest.mark.parametrize("layout", ["gradio3", "gradio4"])
@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_a_live_image_is_the_tabs_own_generation_on_the_panels_hidden_button_then_back_to_the_page(tab, layout):
    w = wired(tab, layout)
    run = w.created[f"lcm_lora_{tab}_live_run"]
    assert run.kwargs["visible"] is False
    (request,) = live_events(run, "submit")
    assert request["fn"]("a cat", 4) == ("images", "a cat", 4), "the host's own generation function"
    # gradio passes the host its request (A1111: txt2img(id_task, request: gr.Request, *args)) by its signature.
    assert inspect.signature(request["fn"]) == inspect.signature(w.event.fn)
    assert request["inputs"] == w.event.inputs and request["outputs"] == w.event.outputs
    assert request["show_progress"] is False and request["api_name"] is False
    assert request["queue"] is False, "one request, not the queue's handshake"
    (back,) = live_events(run, "ended")
    assert back["fn"] is None and back["inputs"] == [] and back["outputs"] == [], "the end costs the server nothing"
    config = config_of(request["_js"])
    assert config["submit"] == "submit", "the host's page function runs the request, as for a click"
    live, live_seed = w.created[f"lcm_lora_{tab}_live"], w.created[f"lcm_lora_{tab}_live_seed"]
    assert w.event.inputs[config["args"]["live"]] is live and w.event.inputs[config["args"]["live_seed"]] is live_seed
    assert live.kwargs["visible"] is False and live_seed.kwargs["visible"] is False, "set by the page, per request"
    assert config["ids"] == {"live_run": f"lcm_lora_{tab}_live_run", "live_cut": f"lcm_lora_{tab}_live_cut",
                             "refresh": f"lcm_lora_{tab}_refresh"}
    assert config_of(back["_js"]) == config
    cut = w.created[f"lcm_lora_{tab}_live_cut"]
    (interrupt,) = live_events(cut, "cutTask")
    task = w.created[f"lcm_lora_{tab}_live_cut_task"]
    assert interrupt["inputs"] == [task] and interrupt["outputs"] == [] and interrupt["queue"] is False
    assert cut.kwargs["visible"] is False and task.kwargs["visible"] is False
    assert config_of(interrupt["_js"]) == config


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_live_runs_in_the_page_and_watches_the_edits_that_change_the_image(tab):
    w = wired(tab)
    switch = w.created[f"lcm_lora_{tab}_live_switch"]
    (event,) = live_events(switch, "switched")
    assert event["fn"] is None, "Live's events cost the server nothing"
    assert event["outputs"] == [w.created[f"lcm_lora_{tab}_enabled"]], "Live switches the panel on"
    watched = set(config_of(event["_js"])["watched"])
    assert {"family", "steps", "cfg_scale", "weight", "mode", "gamma", "fast_decode", "prompt", "negative", "seed",
            "width", "height"} <= watched
    img2img_only = {"denoising", "image", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload", "inpaint_mask"}
    assert (img2img_only <= watched) == (tab == "img2img") and (not img2img_only & watched) == (tab == "txt2img")
    assert len(live_events(w.host[f"{tab}_prompt"], "edited")) == 1
    (back,) = live_events(w.created[f"lcm_lora_{tab}_enabled"], "panelSwitched")
    assert back["outputs"] == [switch], "switching the panel off switches Live off"


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_an_interrupted_live_image_leaves_the_one_on_screen(tab):
    w = wired(tab)
    (request,) = live_events(w.created[f"lcm_lora_{tab}_live_run"], "submit")
    live, state = w.live_ui.live, w.live_ui.live.shared.state
    # The host's generation of task(cut) was interrupted (Live cut it short, was switched off, or the user pressed
    # Interrupt): the postprocess hook notes it; the host resets its flag when its call returns.
    state.interrupted, state.job = True, "task(cut)"
    live.note_if_interrupted()
    state.interrupted, state.job = False, ""
    assert request["fn"]("task(next)") == ("images", "task(next)"), "another request's image is shown"
    unchanged = request["fn"]("task(cut)")
    assert len(unchanged) == len(w.event.outputs) and all(out == {"__type__": "update"} for out in unchanged)
    assert request["fn"]("task(cut)") == ("images", "task(cut)"), "the note is taken once"


def test_the_cut_interrupts_the_host_only_while_it_runs_that_task(tmp_path):
    with live_host(tmp_path) as env:
        state = env.host.shared.state
        calls = []
        state.interrupt = lambda: calls.append(state.job)
        for job in ("task(stale)", "task(next)", ""):  # the stale image, the image started after it, nothing
            state.job = job
            env.live.interrupt_task("task(stale)")
        env.live.interrupt_task("")
    assert calls == ["task(stale)"]


def test_only_a_live_generation_notes_that_it_was_interrupted(tmp_path):
    with live_host(tmp_path) as env:
        from lib_lcm_webui import processing

        state = env.host.shared.state
        state.interrupted, state.job = True, "task(a)"
        for args, task in (([{"enabled": True}], "task(a)"), ([{"live": True}], "task(b)")):
            state.job = task
            p = LiveP()
            processing.before_process(p, args)
            processing.postprocess(p)
        assert env.live.take_interrupted("task(a)") is False, "a click's image is the host's to show"
        assert env.live.take_interrupted("task(b)") is True
        state.interrupted = False
        p = LiveP()
        processing.before_process(p, [{"live": True}])
        processing.postprocess(p)
        assert env.live.take_interrupted("task(b)") is False


def test_without_the_hosts_generate_event_live_is_not_offered_and_the_console_says_why(capsys):
    w = wired("txt2img", with_event=False)
    switch = w.created["lcm_lora_txt2img_live_switch"]
    assert switch.visible is False and live_events(switch, "switched") == []
    assert "Live is off in txt2img: the tab's Generate event" in capsys.readouterr().out
