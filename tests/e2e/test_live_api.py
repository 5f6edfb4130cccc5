"""A live generation over the HTTP API (what the page's Live sends, and what a script can ask for): the panel's
dict form takes `live`, `fast_decode` and `live_seed`; a live image is one image, not saved, with the live seed
for seed -1, decoded by the host's TAESD when it can load its decoder and by the full VAE when it cannot, and the
host's options are as before afterwards.

The host's TAESD decoder file is put in the session server's models/VAE-taesd by the test: first an unloadable one
(the host's loader raises; offline, a missing file would make the host try GitHub), then a random-weight stand-in
in the released layout (tests/fixtures/taesd.py).
"""
from __future__ import annotations

import pytest

from tests.fixtures import taesd

pytestmark = pytest.mark.e2e

BASE = {"prompt": "a photo of a cat", "width": 64, "height": 64, "steps": 20, "cfg_scale": 7.0,
        "sampler_name": "Euler a", "override_settings": {"live_previews_enable": False}}
STEPS = 4


def live(**fields):
    return {"alwayson_scripts": {"LCM-LoRA": {"args": [{"live": True, **fields}]}}}


def saved_files(server):
    outputs = server.outputs_dir()
    return sorted(str(path.relative_to(outputs)) for path in outputs.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def decoder_file(webui_server):
    path = webui_server.data_dir.root / "models" / "VAE-taesd" / taesd.FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def generate(webui, **payload):
    webui.post("/lcm-test/v1/unet/reset")
    result = webui.txt2img(**{**BASE, **payload})
    return result, webui.get("/lcm-test/v1/unet")


def test_live_request_is_one_unsaved_image_with_the_live_seed_and_full_vae_when_taesd_cannot_load(
        webui, webui_server, decoder_file):
    decoder_file.write_bytes(b"not a torch file")
    options = webui.get("/sdapi/v1/options")
    before = saved_files(webui_server)
    result, unet = generate(webui, seed=-1, batch_size=2, n_iter=2, save_images=True,
                            **live(live_seed=77, fast_decode=True))
    assert len(result.images) == 1 and result.info["seed"] == 77
    info = result.infotext
    assert "Sampler: LCM-LoRA" in info and "LCM-LoRA: lcm-lora-sdv1-5" in info and "VAE Decoder" not in info
    assert unet["calls"] == STEPS, "one image, 4 steps, CFG 1: the live request implies the panel on"
    assert saved_files(webui_server) == before, "save_images asked for, but a live image is never saved"
    status = webui.get("/lcm-test/v1/panel-status")["html"]
    assert "could not load its TAESD decoder" in status and "models/VAE-taesd/taesd_decoder.pth" in status
    after = webui.get("/sdapi/v1/options")
    assert after["sd_vae_decode_method"] == options["sd_vae_decode_method"] == "Full"
    assert after["live_previews_enable"] == options["live_previews_enable"]


def test_with_the_decoder_in_place_live_images_decode_with_taesd_and_the_options_come_back(
        webui, webui_server, decoder_file):
    taesd.write_decoder(decoder_file)  # a new file: tried at once, no wait for the retry period
    result, unet = generate(webui, seed=5, **live(live_seed=77))
    assert "VAE Decoder: TAESD" in result.infotext and result.info["seed"] == 5, "an explicit seed is used as is"
    assert unet["calls"] == STEPS
    assert webui.get("/sdapi/v1/options")["sd_vae_decode_method"] == "Full"
    assert "TAESD" not in webui.get("/lcm-test/v1/panel-status")["html"], "the fallback note is gone"
    plain, _ = generate(webui, seed=5, save_images=True, **{"alwayson_scripts": {"LCM-LoRA": {"args": [
        {"enabled": True}]}}})
    assert "VAE Decoder" not in plain.infotext, "a request that is not live decodes as the settings say"
    assert any(name.startswith("txt2img-images") for name in saved_files(webui_server))
