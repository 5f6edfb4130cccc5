"""The LCM-LoRA panel, its status line and settings (lib_lcm_webui.panel/status/settings) against the thin fake of
gradio 3.41 and the WebUI's `modules` in tests/fake_webui.py.

The fake records what the panel creates (components, their kwargs, event listeners); the real page is
exercised by tests/e2e/test_browser.py.
"""
from __future__ import annotations

import json
import re
import threading
import types
from contextlib import contextmanager
from pathlib import Path

import pytest

from lib_lcm.params import PARAMS
from tests.fake_webui import fake_webui

ROOT = Path(__file__).resolve().parents[1]
PANEL_JS = (ROOT / "javascript" / "lcm_lora_panel.js").read_text(encoding="utf-8")


class _Glue:
    """The glue's panel, status and settings modules as `fake_host` last imported them (they stay usable after
    the fake host is uninstalled, for assertions after the `with`)."""

    modules = ()

    def __getattr__(self, name):
        for module in self.modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)


glue = _Glue()


class FakeScript:
    def __init__(self):
        self.after = {}

    def on_after_component(self, callback, *, elem_id):
        self.after.setdefault(elem_id, []).append(callback)

    def component_created(self, elem_id):
        for callback in self.after.get(elem_id, []):
            callback(types.SimpleNamespace(component=None))


@contextmanager
def fake_host(opts=None, input_accordion=True):
    with fake_webui(opts=opts, input_accordion=input_accordion) as host:
        from lib_lcm_webui import panel, settings, status

        host.shared.sd_model = None
        glue.modules = (panel, status, settings)
        yield host


def host_controls(gr, tab, with_scheduler=True):
    """The WebUI tab's own controls the panel drives (1.10 layout; no schedule type before 1.9)."""
    ids = dict(glue.host_elem_ids(tab))
    if not with_scheduler:
        ids.pop("scheduler")
        ids.pop("hr_scheduler", None)
    return {name: gr.Textbox(elem_id=elem) for name, elem in ids.items()}


def build(host, tab="txt2img", with_scheduler=True, controls=True):
    script = FakeScript()
    inputs = glue.build_panel(script, is_img2img=tab == "img2img")
    created = {block.elem_id: block for block in host.ui.created}
    if controls:
        host_controls(host.gr, tab, with_scheduler)
    script.component_created(f"generation_info_{tab}")
    return script, inputs, created


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_inputs_are_in_the_public_api_order_with_stable_elem_ids(tab):
    with fake_host() as host:
        _, inputs, _ = build(host, tab)
    assert [c.elem_id for c in inputs] == [f"lcm_lora_{tab}_{p.key}" for p in PARAMS]
    assert [glue.elem_id(tab, p.key) for p in PARAMS] == [c.elem_id for c in inputs]


def test_panel_is_an_input_accordion_titled_lcm_lora_closed_and_off():
    with fake_host() as host:
        _, inputs, _ = build(host)
    enabled = inputs[0]
    assert type(enabled).__name__ == "InputAccordion"
    assert enabled.value is False
    assert enabled.kwargs["label"] == "LCM-LoRA"


def test_without_input_accordion_a_checkbox_sits_in_a_closed_accordion():
    with fake_host(input_accordion=False) as host:
        _, inputs, created = build(host)
    accordion = created["lcm_lora_txt2img_accordion"]
    assert type(accordion).__name__ == "Accordion" and accordion.kwargs["open"] is False
    assert type(inputs[0]).__name__ == "Checkbox" and inputs[0].value is False


def test_controls_follow_the_parameter_table():
    with fake_host() as host:
        _, inputs, _ = build(host)
    by_key = dict(zip([p.key for p in PARAMS], inputs, strict=True))
    for param in PARAMS[1:]:
        component = by_key[param.key]
        labels = dict(zip(param.choices, param.labels or param.choices, strict=True))
        assert component.value == labels.get(param.default, param.default)
        assert component.kwargs["label"] == param.label
        if param.key in ("live", "live_seed"):
            # Set by the page in the live request's arguments: never shown.
            assert component.kwargs["visible"] is False
        if param.kind is bool:
            assert type(component).__name__ == "Checkbox"
        elif param.key == "live_seed":
            assert type(component).__name__ == "Number" and component.kwargs["precision"] == 0
        elif param.choices:
            assert type(component).__name__ == "Radio"
            assert component.kwargs["choices"] == list(param.labels or param.choices)
        else:
            assert type(component).__name__ == "Slider"
            assert (component.kwargs["minimum"], component.kwargs["maximum"], component.kwargs["step"]) == (
                param.minimum, param.maximum, param.step)
    assert (by_key["steps"].kwargs["minimum"], by_key["steps"].kwargs["maximum"], by_key["steps"].value) == (1, 16, 4)
    assert "2-8" in by_key["steps"].kwargs["info"]
    assert (by_key["cfg_scale"].kwargs["minimum"], by_key["cfg_scale"].kwargs["maximum"]) == (1.0, 8.0)
    assert by_key["cfg_scale"].kwargs["info"] == "1 = fastest, negative prompt ignored"
    assert by_key["gamma"].kwargs["visible"] is False, "gamma only shows for TCD"


def test_settings_page_defaults_fill_the_panel():
    opts = {"lcm_lora_steps": 6, "lcm_lora_cfg_scale": 1.5, "lcm_lora_weight": 0.8, "lcm_lora_mode": "TCD",
            "lcm_lora_tcd_gamma": 0.5}
    with fake_host(opts) as host:
        _, inputs, _ = build(host)
    assert [c.value for c in inputs] == [False, 6, 1.5, 0.8, "TCD", 0.5, False, True, -1, "LCM-LoRA"]
    assert inputs[5].kwargs["visible"] is True


def page_logic_events(component):
    return [kw for name, kw in component.events if name == "change" and "lcmLoraPanel.handle" in (kw.get("_js") or "")]


def js_config(js):
    found = re.fullmatch(r"\(\.\.\.args\) => lcmLoraPanel\.handle\((\{.*\}), args\)", js)
    assert found, js
    return json.loads(found.group(1))


@pytest.mark.parametrize("tab, with_scheduler", [("txt2img", True), ("img2img", True), ("txt2img", False)])
def test_page_logic_gets_panel_and_host_controls_in_the_order_it_names_them(tab, with_scheduler):
    with fake_host() as host:
        script = FakeScript()
        inputs = glue.build_panel(script, is_img2img=tab == "img2img")
        controls = host_controls(host.gr, tab, with_scheduler)
        script.component_created(f"generation_info_{tab}")
    panel = dict(zip([p.key for p in PARAMS], inputs, strict=True))
    status = next(b for b in host.ui.created if b.elem_id == f"lcm_lora_{tab}_status")
    panel["status"] = status
    for key in ("enabled", "steps", "cfg_scale", "weight", "mode", "status"):
        events = page_logic_events(panel[key])
        assert len(events) == 1, key
        event = events[0]
        assert event["fn"] is None, "the page logic runs in the browser only"
        config = js_config(event["_js"])
        assert config["tab"] == tab
        assert config["samplers"] == {"LCM": "LCM-LoRA", "TCD": "LCM-LoRA TCD"}
        named = {**panel, **controls}
        assert event["inputs"] == [named[name] for name in config["inputs"]]
        assert event["outputs"] == [named[name] for name in config["outputs"]]
        assert config["inputs"][:6] == ["enabled", "steps", "cfg_scale", "weight", "mode", "status"]
        assert set(config["outputs"]) == set(controls)
    has_hires = {"hr_sampler", "hr_steps"} <= set(config["outputs"])
    assert has_hires == (tab == "txt2img")
    assert ("scheduler" in config["outputs"]) == with_scheduler


def test_no_prompt_box_means_no_page_logic_and_a_console_line(capsys):
    with fake_host() as host:
        _, inputs, _ = build(host, controls=False)
    assert page_logic_events(inputs[0]) == []
    assert "prompt box was not found" in capsys.readouterr().out


def test_page_logic_functions_exist_in_the_panel_script():
    with fake_host() as host:
        _, inputs, created = build(host)
    scripts = [kw["_js"] for c in host.ui.created for _, kw in c.events if kw.get("_js")]
    called = {m for js in scripts for m in re.findall(r"lcmLoraPanel\.(\w+)", js)}
    assert called == {"handle", "gammaVisibility"}
    exported = set(re.search(r"return Object\.freeze\(\{(.*?)\}\);\n\}\)\(\);", PANEL_JS, re.S).group(1).split())
    assert {name + ":" for name in called} <= exported
    mode_events = [kw for _, kw in inputs[4].events if kw.get("_js") == "lcmLoraPanel.gammaVisibility"]
    assert mode_events and mode_events[0]["outputs"] == [inputs[5]]


def test_status_line_refreshes_on_enable_on_request_and_after_download():
    with fake_host() as host:
        _, inputs, created = build(host)
    status, download, refresh = (created[f"lcm_lora_txt2img_{key}"] for key in ("status", "download", "refresh"))
    server_events = {(name, kw["fn"]) for name, kw in inputs[0].events + refresh.events + download.events if kw.get("fn")}
    assert server_events == {("change", glue.refresh_status), ("click", glue.refresh_status),
                             ("click", glue.on_download_click)}
    for _, kw in inputs[0].events + refresh.events + download.events:
        if kw.get("fn"):
            assert kw["outputs"] == [status, download]
    assert refresh.kwargs["visible"] is False and download.kwargs["visible"] is False


def test_paste_turns_the_panel_on_and_restores_its_values():
    with fake_host() as host:
        script, inputs, _ = build(host)
        fields = {}
        for component, key in script.infotext_fields:
            fields.setdefault(component.elem_id, key)  # the first entry per component is the infotext one
        pasted = {"LCM-LoRA": "lcm-lora-sdv1-5", "Steps": "6", "CFG scale": "1.5", "LCM-LoRA weight": "0.8",
                  "LCM-LoRA mode": "TCD", "TCD gamma": "0.4", "Sampler": "LCM-LoRA TCD"}
        plain_params = {"Steps": "20", "CFG scale": "7"}

        def paste(params):
            # The host: a callable reads the params, a string key is looked up (absent = no change).
            return {elem: key(params) if callable(key) else params.get(key, {"__type__": "update"})
                    for elem, key in fields.items()}

        values, plain = paste(pasted), paste(plain_params)
    assert values["lcm_lora_txt2img_enabled"] is True
    assert (values["lcm_lora_txt2img_steps"], values["lcm_lora_txt2img_cfg_scale"]) == (6, 1.5)
    assert values["lcm_lora_txt2img_weight"] == "0.8" and values["lcm_lora_txt2img_mode"] == "TCD"
    assert values["lcm_lora_txt2img_gamma"] == "0.4"
    assert values["lcm_lora_txt2img_family"] == "LCM-LoRA"  # no family key: an LCM-LoRA image
    family_image = paste({**pasted, "LCM-LoRA": "sdxl_lightning_4step_lora", "LCM-LoRA family": "lightning"})
    assert family_image["lcm_lora_txt2img_family"] == "SDXL-Lightning"
    assert plain["lcm_lora_txt2img_enabled"] is False
    assert all(value == {"__type__": "update"} for elem, value in plain.items() if not elem.endswith("enabled"))
    assert script.paste_field_names == ["LCM-LoRA weight", "LCM-LoRA mode", "TCD gamma", "LCM-LoRA enabled",
                                        "LCM-LoRA steps", "LCM-LoRA CFG", "LCM-LoRA family choice"]
    # String keys count as handled for the host, so "TCD gamma" is not also offered as a settings override.
    assert {"LCM-LoRA weight", "LCM-LoRA mode", "TCD gamma"} <= {key for key in fields.values() if isinstance(key, str)}


def test_send_to_copies_every_panel_input_by_name_in_the_same_order_in_both_tabs():
    """The host copies txt2img's fields named in paste_field_names to the same-named fields of the target tab."""
    with fake_host() as host:
        txt2img, txt_inputs, _ = build(host, "txt2img")
        img2img, img_inputs, _ = build(host, "img2img")

    def copied(script):
        return [component for component, key in script.infotext_fields
                if isinstance(key, str) and key in txt2img.paste_field_names]

    sources, targets = copied(txt2img), copied(img2img)
    assert [c.elem_id.replace("txt2img", "img2img") for c in sources] == [c.elem_id for c in targets]
    live_fields = {f"lcm_lora_img2img_{key}" for key in ("live", "fast_decode", "live_seed")}
    assert {c.elem_id for c in targets} == {c.elem_id for c in img_inputs} - live_fields, (
        "every panel input travels but Live's, which belong to the tab's Live")
    # Names no infotext contains: a parameters paste reads these components from their infotext entries.
    assert not set(glue.SEND_TO_FIELDS.values()) & {p.infotext for p in PARAMS}


def test_settings_section_has_the_defaults_and_policies():
    with fake_host() as host:
        glue.register_settings()
        added = host.shared.opts.added
    assert {"lcm_lora_steps", "lcm_lora_cfg_scale", "lcm_lora_weight", "lcm_lora_mode", "lcm_lora_tcd_gamma",
            "lcm_lora_download", "lcm_lora_warnings"} <= set(added)
    assert all(info.section == glue.SECTION for info in added.values())
    assert added["lcm_lora_download"].component_args["choices"] == list(glue.DOWNLOAD_POLICIES)
    assert added["lcm_lora_steps"].default == 4 and added["lcm_lora_cfg_scale"].default == 1.0


# -- status line -------------------------------------------------------------------------------------------


def fake_model(tmp_path, is_sd2=False):
    info = types.SimpleNamespace(filename=str(tmp_path / "model.ckpt"), name_for_extra="my-model")
    return types.SimpleNamespace(sd_checkpoint_info=info, is_sd1=not is_sd2, is_sd2=is_sd2, is_sdxl=False)


def test_status_names_the_variant_and_whether_its_file_is_there(tmp_path):
    with fake_host():
        status_names_the_variant_and_whether_its_file_is_there(tmp_path)


def status_names_the_variant_and_whether_its_file_is_there(tmp_path):
    model = fake_model(tmp_path)
    missing = glue.panel_status(model, tmp_path / "Lora")
    assert (missing.checkpoint, missing.variant, missing.stem) == ("my-model", "sd15", "lcm-lora-sdv1-5")
    assert missing.needs_download
    target = tmp_path / "Lora" / "LCM-LoRA" / "lcm-lora-sdv1-5.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    present = glue.panel_status(model, tmp_path / "Lora")
    assert present.installed and not present.needs_download
    text = glue.status_html(present)
    assert 'data-lcm-stem="lcm-lora-sdv1-5"' in text and "installed" in text and "my-model" in text
    assert "not installed" in glue.status_html(missing)


def test_status_for_an_unsupported_checkpoint_says_so_and_offers_no_download(tmp_path):
    with fake_host():
        status = glue.panel_status(fake_model(tmp_path, is_sd2=True), tmp_path)
        assert status.stem is None and not status.needs_download
        text = glue.status_html(status)
    assert 'data-lcm-stem=""' in text
    assert "(SD 2.x)" in text and "not supported for this model" in text and "SD 1.5, SDXL and SSD-1B" in text


def test_placeholder_status_carries_no_stem_so_the_page_waits_for_the_real_one():
    with fake_host() as host:
        _, _, created = build(host)
    placeholder = created["lcm_lora_txt2img_status"].value
    assert "Checking" in placeholder and "data-lcm-stem" not in placeholder


def test_status_without_a_model_and_html_escaping():
    with fake_host():
        assert glue.panel_status(None, "").problem == "No checkpoint is loaded yet."
        text = glue.status_html(glue.PanelStatus(checkpoint='<b>"x"</b>', architecture="sd1",
                                                 stem="lcm-lora-sdv1-5", installed=True))
    assert "&lt;b&gt;&quot;x&quot;&lt;/b&gt;" in text and '<b>"x"</b>' not in text


def test_status_before_forge_loads_the_checkpoint_describes_the_selected_one(tmp_path, tiny_models):
    """Forge loads the checkpoint at the first generation; until then `shared.sd_model` is a placeholder without
    `sd_checkpoint_info`, and the page waited for a stem that never came (browser suite on Forge)."""
    checkpoint = tiny_models.sd15
    forge_placeholder = types.SimpleNamespace(cond_stage_model=None, chunk_length=75)  # Forge's FakeInitialModel
    with fake_host() as host:
        host.shared.sd_model = forge_placeholder
        host.shared.cmd_opts.lora_dir = str(tmp_path / "Lora")
        assert "data-lcm-stem=\"\"" in glue.refresh_status()[0]  # nothing selected: no LoRA to tag
        host.sd_models.select_checkpoint = lambda: types.SimpleNamespace(
            filename=str(checkpoint), name_for_extra="picked-in-settings")
        html, button = glue.refresh_status()
    assert 'data-lcm-stem="lcm-lora-sdv1-5"' in html and "picked-in-settings" in html and "(SD 1.x)" in html
    assert button == {"__type__": "update", "visible": True}  # not installed: Download offered


def test_status_after_a_checkpoint_picked_but_not_yet_loaded_describes_the_picked_one(tmp_path, tiny_models):
    """Forge loads a checkpoint picked in its top bar at the next generation: the loaded model is still the
    previous one, and the status and tag stayed on its LoRA (browser suite on Forge, SD 1.5 -> SDXL and back)."""
    models = tiny_models
    loaded = types.SimpleNamespace(sd_checkpoint_info=types.SimpleNamespace(filename=str(models.sdxl),
                                   name_for_extra="tiny-sdxl"), is_sd1=False, is_sd2=False, is_sdxl=True)
    with fake_host() as host:
        host.shared.sd_model = loaded
        host.shared.cmd_opts.lora_dir = str(tmp_path / "Lora")
        host.sd_models.select_checkpoint = lambda: loaded.sd_checkpoint_info  # A1111: picked = loaded
        assert 'data-lcm-stem="lcm-lora-sdxl"' in glue.refresh_status()[0]
        host.sd_models.select_checkpoint = lambda: types.SimpleNamespace(
            filename=str(models.sd15), name_for_extra="picked-in-top-bar")
        html, _ = glue.refresh_status()
    assert 'data-lcm-stem="lcm-lora-sdv1-5"' in html and "picked-in-top-bar" in html


def test_download_button_shows_progress_then_the_installed_status(tmp_path, monkeypatch):
    from lib_lcm.weights import download

    lora_dir = tmp_path / "Lora"
    calls = []
    release = threading.Event()

    def ensure_weights(variant, lora_dir_arg, progress=None, **kwargs):
        calls.append((variant, lora_dir_arg))
        progress(5 * 2**20, 10 * 2**20)
        assert release.wait(timeout=30), "the test never let the download finish"
        target = Path(lora_dir_arg) / "LCM-LoRA" / "lcm-lora-sdv1-5.safetensors"
        target.parent.mkdir(parents=True)
        target.write_bytes(b"x")
        return target

    monkeypatch.setattr(download, "ensure_weights", ensure_weights)
    with fake_host() as host:
        host.shared.sd_model = fake_model(tmp_path)
        host.shared.cmd_opts.lora_dir = str(lora_dir)
        first_html, first_button = glue.refresh_status()
        updates = glue.on_download_click()
        steps = [next(updates)]  # the download is running (held by `release`) when the first update comes
        release.set()
        steps += list(updates)
    assert first_button == {"__type__": "update", "visible": True}
    assert calls == [("sd15", str(lora_dir))]
    final_html, final_button = steps[-1]
    assert final_button == {"__type__": "update", "visible": False}
    assert "installed" in final_html and "not installed" not in final_html
    for html, button in steps[:-1]:
        assert ("Downloading" in html or "Starting" in html) and "not installed" not in html
        assert button == {"__type__": "update", "visible": False}, "no second click while downloading"


def test_download_error_is_shown_in_the_status_line(tmp_path, monkeypatch):
    from lib_lcm.weights import download, errors

    def offline(*args, **kwargs):
        raise errors.WeightsOfflineError("lcm-lora-sdv1-5 is not installed and HF_HUB_OFFLINE is set")

    monkeypatch.setattr(download, "ensure_weights", offline)
    with fake_host() as host:
        host.shared.sd_model = fake_model(tmp_path)
        host.shared.cmd_opts.lora_dir = str(tmp_path)
        final_html, final_button = list(glue.on_download_click())[-1]
    assert "HF_HUB_OFFLINE is set" in final_html
    assert final_button == {"__type__": "update", "visible": True}


def custom_registry(tmp_path, monkeypatch, **stems):
    from lib_lcm.weights import registry

    data = json.loads(registry.default_registry_path().read_text(encoding="utf-8"))
    for variant, stem in stems.items():
        data["variants"][variant]["stem"] = stem
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setenv(registry.REGISTRY_ENV, str(path))


def test_page_config_carries_the_registrys_stems_and_the_host_targets(tmp_path, monkeypatch):
    custom_registry(tmp_path, monkeypatch, sd15="my-lcm-sd15", sdxl="my-lcm-xl", ssd1b="my-lcm-ssd")
    with fake_host():
        config = glue.page_config("txt2img", ["enabled"], ["prompt"])
    # Every catalogue file's stem: switching the family swaps the tag.
    assert config["stems"][:3] == ["my-lcm-sd15", "my-lcm-xl", "my-lcm-ssd"]
    from lib_lcm.weights import registry

    assert config["stems"] == list(registry.stems(family=None)) and "sdxl_lightning_4step_lora" in config["stems"]
    # tests/js/panel_logic.test.mjs runs the page logic with these targets.
    assert config["fixed"] == {"scheduler": "Automatic", "hr_sampler": "Use same sampler",
                               "hr_scheduler": "Use same scheduler", "hr_steps": 0}
    assert config["samplers"] == {"LCM": "LCM-LoRA", "TCD": "LCM-LoRA TCD"}


def test_status_names_a_custom_registry_stem(tmp_path, monkeypatch):
    custom_registry(tmp_path, monkeypatch, sd15="my-lcm-sd15")
    with fake_host():
        text = glue.status_html(glue.panel_status(fake_model(tmp_path), tmp_path / "Lora"))
    assert 'data-lcm-stem="my-lcm-sd15"' in text and "<code>my-lcm-sd15</code>" in text


def test_settings_defaults_are_the_parameter_tables():
    with fake_host() as host:
        glue.register_settings()
        added = host.shared.opts.added
    for param in PARAMS:
        if param.setting:
            assert added[param.setting].default == param.default and added[param.setting].label == param.setting_label
