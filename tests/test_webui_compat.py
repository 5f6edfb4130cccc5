"""lib_lcm_webui.compat, and the host differences kept with their callers (panel, processing, settings), against
stand-ins of each host generation (A1111 1.6 - 1.10); the real hosts run in tests/e2e (see
docs/compatibility.md)."""
from __future__ import annotations

import functools
import re
import sys
import types

import pytest

from tests.fake_webui import fake_webui


@pytest.fixture
def host():
    with fake_webui() as fake:
        from lib_lcm_webui import processing, settings
        from lib_lcm_webui.compat import sampler_api

        fake.processing, fake.settings, fake.sampler_api = processing, settings, sampler_api
        yield fake


class Denoiser:
    def __init__(self, padded):
        self.padded_cond_uncond = padded


class SamplerBefore18:
    """1.6/1.7: no add_infotext; the sampler wrote "Pad conds" itself after sampling."""

    def __init__(self, padded):
        self.model_wrap_cfg = Denoiser(padded)


class Sampler18(SamplerBefore18):
    def add_infotext(self, p):
        p.extra_generation_params["Pad conds"] = self.model_wrap_cfg.padded_cond_uncond
        p.extra_generation_params["by host"] = True


def processing(**attributes):
    return types.SimpleNamespace(extra_generation_params={}, **attributes)


@pytest.mark.parametrize("padded", [True, False])
def test_sampler_infotext_before_1_8_writes_pad_conds_only_when_padded(host, padded):
    p = processing()
    host.sampler_api.add_sampler_infotext(SamplerBefore18(padded), p)
    assert p.extra_generation_params == ({"Pad conds": True} if padded else {})


def test_sampler_infotext_from_1_8_is_the_hosts(host):
    p = processing()
    host.sampler_api.add_sampler_infotext(Sampler18(True), p)
    assert p.extra_generation_params == {"Pad conds": True, "by host": True}


def test_sampler_cache_is_cleared_where_the_host_caches(host):
    calls = []

    @functools.cache
    def get_sampler_and_scheduler(name, scheduler):
        calls.append(name)

    get_sampler_and_scheduler("LCM-LoRA", "Automatic")
    host.sampler_api.clear_sampler_cache(types.SimpleNamespace(get_sampler_and_scheduler=get_sampler_and_scheduler))
    get_sampler_and_scheduler("LCM-LoRA", "Automatic")
    assert calls == ["LCM-LoRA", "LCM-LoRA"]
    host.sampler_api.clear_sampler_cache(types.SimpleNamespace())  # before 1.9: nothing to clear, no error


@pytest.mark.parametrize("hires", [True, False])
def test_schedule_types_reset_on_1_9_and_left_alone_before(host, hires):
    p = processing(scheduler="Karras", hr_scheduler="Exponential")
    host.sampler_api.reset_schedule_types(p, hires=hires)
    assert p.scheduler == "Automatic"
    assert p.hr_scheduler == ("Automatic" if hires else "Exponential")
    old = processing()
    host.sampler_api.reset_schedule_types(old, hires=True)
    assert not hasattr(old, "scheduler") and not hasattr(old, "hr_scheduler")


class Options16:
    """1.6's Options: add_option only records the label."""

    def __init__(self, data):
        self.data = dict(data)
        self.data_labels = {}

    def add_option(self, key, info):
        self.data_labels[key] = info


class Options17(Options16):
    def add_option(self, key, info):
        super().add_option(key, info)
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default


@pytest.mark.parametrize("options_class", [Options16, Options17])
def test_option_default_is_stored_on_every_host_and_a_saved_value_kept(host, options_class):
    shared_module = host.shared
    shared_module.opts = options_class({"lcm_lora_weight": 0.5})
    for key in ("lcm_lora_steps", "lcm_lora_weight"):
        host.settings.add_option(key, types.SimpleNamespace(default=4, do_not_save=False))
    host.settings.add_option("lcm_lora_note", types.SimpleNamespace(default="x", do_not_save=True))
    assert shared_module.opts.data == {"lcm_lora_steps": 4, "lcm_lora_weight": 0.5}
    assert set(shared_module.opts.data_labels) == {"lcm_lora_steps", "lcm_lora_weight", "lcm_lora_note"}


def test_input_accordion_is_none_on_a_host_without_it():
    with fake_webui(input_accordion=False):
        from lib_lcm_webui import panel

        assert panel.InputAccordion is None
    with fake_webui(input_accordion=True):
        from lib_lcm_webui import panel

        assert panel.InputAccordion is sys.modules["modules.ui_components"].InputAccordion


# A1111 1.6's infotext pattern (`re_param_code`, keys `[\w ]+`) and an infotext as our samplers write it.
RE_PARAM_1_6 = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
INFOTEXT = ('a cat <lora:lcm-lora-sdv1-5:0.75>\nSteps: 4, Sampler: LCM-LoRA TCD, CFG scale: 1.0, Seed: 1, '
            'LCM-LoRA weight: 0.75, LCM-LoRA mode: TCD, LCM-LoRA: lcm-lora-sdv1-5, Lora hashes: "lcm-lora-sdv1-5: '
            'eb1e7a7bf5d5", TCD gamma: 0.5, LCM-LoRA warning: "CFG 3 > 2, steps 9 > 8", Version: v1.6.0')
KEYS = ["LCM-LoRA weight", "LCM-LoRA mode", "TCD gamma", "LCM-LoRA", "LCM-LoRA warning"]


def test_infotext_keys_cut_at_the_hyphen_by_1_6_are_restored_and_unquoted(host):
    params = dict(RE_PARAM_1_6.findall(INFOTEXT.split("\n")[-1]))
    assert "LCM-LoRA weight" not in params and params["LoRA weight"] == "0.75"  # what 1.6 makes of it
    host.processing.restore_infotext_keys(INFOTEXT, params, KEYS)
    assert {key: params[key] for key in KEYS} == {
        "LCM-LoRA weight": "0.75", "LCM-LoRA mode": "TCD", "TCD gamma": "0.5", "LCM-LoRA": "lcm-lora-sdv1-5",
        "LCM-LoRA warning": "CFG 3 > 2, steps 9 > 8"}


def test_infotext_keys_the_host_parsed_are_left_alone(host):
    params = {"LCM-LoRA weight": 0.75, "LCM-LoRA": "from host"}
    host.processing.restore_infotext_keys(INFOTEXT, params, ["LCM-LoRA weight", "LCM-LoRA"])
    assert params == {"LCM-LoRA weight": 0.75, "LCM-LoRA": "from host"}
    plain = {}
    host.processing.restore_infotext_keys("a cat\nSteps: 4, Sampler: Euler", plain, KEYS)
    assert plain == {}
