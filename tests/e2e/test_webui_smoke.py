"""The harness itself works on the real WebUI: server up, samplers listed, images generated, tiny LoRA applied.

Uses only the host's own features, so it holds whatever state the extension's scripts are in.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

LCM_TAG = "<lora:lcm-lora-sdv1-5:1>"
BASE = {"prompt": "a photo of a cat", "width": 64, "height": 64, "steps": 4, "seed": 1234,
        "sampler_name": "Euler", "cfg_scale": 1.0}


def test_samplers_are_listed(webui):
    names = {sampler["name"] for sampler in webui.get("/sdapi/v1/samplers")}
    assert {"Euler", "Euler a", "DPM++ 2M"} <= names


def test_tiny_checkpoint_is_loaded(webui, webui_server):
    options = webui.get("/sdapi/v1/options")
    assert options["sd_model_checkpoint"].startswith(webui_server.data_dir.checkpoint.stem)


def test_plain_txt2img_returns_an_image(webui):
    result = webui.txt2img(**BASE)
    pixels = np.asarray(result.image.convert("RGB"), dtype=np.float32)
    assert result.image.size == (64, 64)
    assert np.isfinite(pixels).all() and pixels.std() > 0
    assert "Steps: 4" in result.infotext and "Sampler: Euler" in result.infotext
    assert "Lora hashes" not in result.infotext


def test_tiny_lcm_lora_tag_is_applied(webui, webui_server):
    plain = webui.txt2img(**BASE)
    with_lora = webui.txt2img(**{**BASE, "prompt": f"{BASE['prompt']} {LCM_TAG}"})
    assert 'Lora hashes: "lcm-lora-sdv1-5: ' in with_lora.infotext
    assert "Lora not found" not in with_lora.infotext
    assert np.asarray(with_lora.image).tobytes() != np.asarray(plain.image).tobytes()
    assert "Network not found" not in webui_server.log_text()


def test_ui_mode_serves_the_page_and_the_api(webui_ui):
    status, page = webui_ui.request("GET", "/")
    assert status == 200 and "gradio" in page.lower()
    assert webui_ui.get("/sdapi/v1/samplers")
