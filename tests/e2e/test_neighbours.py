"""LCM-LoRA next to the most-installed extensions that touch the same code paths, in one real WebUI.

Runs when ``LCM_NEIGHBOURS_DIR`` names a folder holding checkouts of any of ``sd-webui-controlnet``
(Mikubill), ``sd-webui-animatediff`` (continue-revolution) and ``adetailer`` (Bing-su); none of their code is part
of this repository. Their install.py runs pip: keep ``PIP_CONSTRAINT`` (torch/numpy/protobuf pinned), and point
``SD_WEBUI_PYTHON`` at a venv you do not mind them changing. What is checked:

- all present neighbours load, sampler names stay unique, our extension logs no error or traceback;
- an LCM-LoRA generation still makes one UNet row per step at CFG 1 (4 steps), tagged in the infotext;
- ControlNet: a reference-only unit (its model-free mode, works with any UNet) together with LCM-LoRA here; a
  ControlNet model and AnimateDiff's motion modules exist only at SD 1.5's full 320/640/1280-channel size, so the
  model card's canny example and AnimateDiff video run in tests/e2e/test_neighbours_models.py on the slim
  checkpoint (SD 1.5's UNet) with full-size random stand-ins;
- the model card's inpainting example: the tiny inpainting checkpoint, 4 steps, CFG 4 set in the panel (API);
- ADetailer: its inpainting pass runs with our sampler and CFG-1 skip (a random YOLO detector whose every
  anchor is a hit stands in for a face model; needs ultralytics in the WebUI's python);
- AnimateDiff is loaded next to us (its video: see above);
- ``sd-webui-animatediff-lcm`` (optional, its own server): an AnimateDiff from before 2024-02 (e.g. tag v1.13.1)
  that registers its own "LCM" sampler next to the host's (sd-webui-animatediff#413): our names stay unique and
  LCM-LoRA still generates.
"""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from lib_lcm.schedules import lcm_timesteps
from tests.e2e.conftest import EXTENSION_NAME, PROBE_EXTENSION
from tests.e2e.test_lcm_webui import HOST_LCM_SINCE
from tests.e2e.webui import REPO_ROOT, DataDir, WebUIServer

NEIGHBOURS_ENV = "LCM_NEIGHBOURS_DIR"
pytestmark = pytest.mark.e2e
if os.environ.get("SD_WEBUI_DIR") and not os.environ.get(NEIGHBOURS_ENV):
    # Without SD_WEBUI_DIR the e2e conftest skips these like every real-WebUI test (its one summary line).
    pytest.skip(f"neighbours e2e: set {NEIGHBOURS_ENV} to a folder with sd-webui-controlnet, sd-webui-animatediff "
                "and/or adetailer checkouts", allow_module_level=True)

# Folder name -> the title its always-on script registers (lower-cased in /sdapi/v1/scripts).
NEIGHBOURS = {"sd-webui-controlnet": "controlnet", "sd-webui-animatediff": "animatediff", "adetailer": "adetailer"}
OLD_ANIMATEDIFF = "sd-webui-animatediff-lcm"
STEM = "lcm-lora-sdv1-5"
REFERENCE_TIMESTEPS = lcm_timesteps(4)
DETECTOR = "lcm-test-always.pt"
BASE = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "width": 64, "height": 64, "seed": 1234,
        "override_settings": {"live_previews_enable": False}}
LCM_ON = {"LCM-LoRA": {"args": [{"enabled": True}]}}

# A YOLOv8n with random weights and every class logit at +10: each anchor is a confident detection.
MAKE_DETECTOR = """
import sys, torch
from ultralytics import YOLO
torch.manual_seed(0)
model = YOLO("yolov8n.yaml")
for branch in model.model.model[-1].cv3:
    branch[-1].bias.data.fill_(10.0)
model.save(sys.argv[1])
"""


def present_neighbours() -> dict[str, Path]:
    root = Path(os.environ[NEIGHBOURS_ENV])
    found = {name: root / name for name in NEIGHBOURS if (root / name).is_dir()}
    if not found:
        pytest.fail(f"{NEIGHBOURS_ENV}={root} holds none of {', '.join(NEIGHBOURS)}")
    return found


def make_detector(python: Path, target: Path) -> bool:
    """Write the always-detecting YOLO model with the WebUI's python; False when ultralytics is missing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(python), "-c", MAKE_DETECTOR, str(target)], cwd=target.parent,
                            env={**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=300)
    return result.returncode == 0 and target.is_file()


def start_with(extensions: dict[str, Path], installation, models, env, root: Path, detector: bool = False):
    """Prepare and start a WebUI with ``extensions`` + ours + the probe; (server, whether the detector exists)."""
    extensions = {**extensions, EXTENSION_NAME: REPO_ROOT, "lcm-test-probe": PROBE_EXTENSION}
    # The first checkpoint is loaded at start; the others (A1111: the tiny SD 1.5 inpainting one) to switch to.
    data_dir = DataDir.create(root / "data", models["checkpoints"], models["loras"], extensions)
    made = detector and make_detector(installation.python, data_dir.root / "models" / "adetailer" / DETECTOR)
    server = WebUIServer(installation, data_dir, extra_env=dict(env))
    try:
        server.prepare(timeout=900)
        load_scripts(server.start(timeout=300))
    except BaseException:
        server.stop()
        raise
    return server, made


def load_scripts(client) -> None:
    """Have the host load its scripts and register the extensions' settings. A1111 up to 1.7 with ``--nowebui``
    does both at the first txt2img request only (modules/api/api.py, text2imgapi: initialize_scripts, then
    create_ui, which runs the on_ui_settings callbacks); until then /sdapi/v1/scripts lists nothing and setting an
    extension's option fails with KeyError. From 1.8 the API does it at start-up: nothing to do then."""
    if not client.get("/sdapi/v1/scripts")["txt2img"]:
        client.txt2img(**BASE, steps=1)


@pytest.fixture(scope="module")
def neighbours(webui_installation, tiny_webui_models, webui_env, tmp_path_factory):
    """(server, client, present neighbour names, whether the ADetailer detector exists) for the module."""
    found = present_neighbours()
    server, detector = start_with(found, webui_installation, tiny_webui_models, webui_env,
                                  tmp_path_factory.mktemp("neighbours"), detector="adetailer" in found)
    try:
        yield server, server.client(), set(found), detector
    finally:
        server.stop()


@pytest.fixture(scope="module")
def old_animatediff(webui_installation, tiny_webui_models, webui_env, tmp_path_factory):
    folder = Path(os.environ[NEIGHBOURS_ENV]) / OLD_ANIMATEDIFF
    if not folder.is_dir():
        pytest.skip(f"no {OLD_ANIMATEDIFF} (an AnimateDiff that registers its own LCM) in {NEIGHBOURS_ENV}")
    server, _ = start_with({"sd-webui-animatediff": folder}, webui_installation, tiny_webui_models, webui_env,
                           tmp_path_factory.mktemp("old-animatediff"))
    try:
        yield server
    finally:
        server.stop()


def generate(client, **payload) -> tuple[str, dict]:
    client.post("/lcm-test/v1/unet/reset")
    result = client.txt2img(**{**BASE, **payload})
    return result.infotext, client.get("/lcm-test/v1/unet")


def assert_lcm_infotext(infotext: str) -> None:
    assert f"LCM-LoRA: {STEM}" in infotext and "Sampler: LCM-LoRA," in infotext
    assert f'Lora hashes: "{STEM}: ' in infotext and "Lora not found" not in infotext


def png_b64(color=(120, 90, 200)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_every_neighbour_loads_next_to_us(neighbours):
    _, client, found, _ = neighbours
    titles = set(client.get("/sdapi/v1/scripts")["txt2img"])
    assert {NEIGHBOURS[name] for name in found} | {"lcm-lora"} <= titles


def test_sampler_names_stay_unique(neighbours):
    _, client, _, _ = neighbours
    names = [sampler["name"] for sampler in client.get("/sdapi/v1/samplers")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
    assert names.count("LCM-LoRA") == 1 and names.count("LCM-LoRA TCD") == 1


def test_lcm_generation_skips_the_uncond_pass_with_neighbours_loaded(neighbours):
    _, client, _, _ = neighbours
    infotext, probe = generate(client, alwayson_scripts=LCM_ON)
    assert_lcm_infotext(infotext)
    assert (probe["calls"], probe["rows"]) == (4, 4)
    assert probe["timesteps"] == REFERENCE_TIMESTEPS


def test_controlnet_reference_only_unit_with_lcm(neighbours):
    import numpy as np

    server, client, found, _ = neighbours
    if "sd-webui-controlnet" not in found:
        pytest.skip(f"sd-webui-controlnet is not in {NEIGHBOURS_ENV}")
    unit = {"enabled": True, "module": "reference_only", "model": "None", "image": png_b64(), "weight": 1.0}
    client.post("/lcm-test/v1/unet/reset")
    with_unit = client.txt2img(**BASE, alwayson_scripts={**LCM_ON, "controlnet": {"args": [unit]}})
    probe = client.get("/lcm-test/v1/unet")
    without_unit = client.txt2img(**BASE, alwayson_scripts=LCM_ON)
    assert_lcm_infotext(with_unit.infotext)
    assert 'ControlNet 0: "Module: reference_only' in with_unit.infotext
    # ControlNet's reference pass calls the UNet's forward directly (not counted); ours stays one row per step.
    assert (probe["calls"], probe["rows"]) == (4, 4) and probe["timesteps"] == REFERENCE_TIMESTEPS
    pixels = np.asarray(with_unit.image, dtype=np.float32)
    assert np.isfinite(pixels).all() and pixels.std() > 0
    assert not np.array_equal(pixels, np.asarray(without_unit.image, dtype=np.float32))  # the reference acted
    # ControlNet tells cond from uncond rows by marks on the conditioning; with the uncond pass skipped they
    # must still reach the UNet, else it warns and falls back ("Failed to detect whether ... cond or uncond").
    assert "ControlNet Error" not in server.log_text()


def test_adetailer_inpaint_pass_runs_with_our_sampler(neighbours):
    _, client, found, detector = neighbours
    if "adetailer" not in found:
        pytest.skip(f"adetailer is not in {NEIGHBOURS_ENV}")
    if not detector:
        pytest.skip("ADetailer present but ultralytics is missing in the WebUI's python: no detector model")
    ad = {"ad_model": DETECTOR, "ad_mask_k": 1, "ad_denoising_strength": 0.5}
    infotext, probe = generate(client, alwayson_scripts={**LCM_ON, "ADetailer": {"args": [True, False, ad]}})
    assert_lcm_infotext(infotext)
    assert f"ADetailer model: {DETECTOR}" in infotext
    # The pass reuses the sampler, steps and CFG 1: four more single-row calls from strength 0.5's noise level.
    assert (probe["calls"], probe["rows"]) == (8, 8)
    assert probe["timesteps"] == REFERENCE_TIMESTEPS + lcm_timesteps(4, strength=0.5)


def test_inpainting_at_the_model_cards_guidance_4(neighbours, webui_installation):
    """The model card's inpainting example: an inpainting checkpoint, 4 steps, guidance 4, set in the panel (API)."""
    import numpy as np
    from PIL import Image

    if webui_installation.is_forge:
        pytest.skip("no SD 1.5 inpainting checkpoint on Forge (it loads none of the tiny fixtures)")
    _, client, _, _ = neighbours
    init = Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    settings = {**BASE["override_settings"], "sd_model_checkpoint": "tiny-sd15-inpainting"}
    client.post("/lcm-test/v1/unet/reset")
    result = client.img2img(init, **{**BASE, "override_settings": settings}, mask=png_b64_of(Image.fromarray(mask)),
                            inpainting_fill=1, denoising_strength=1.0,
                            alwayson_scripts={"LCM-LoRA": {"args": [{"enabled": True, "steps": 4, "cfg_scale": 4}]}})
    probe = client.get("/lcm-test/v1/unet")
    assert_lcm_infotext(result.infotext)
    assert "CFG scale: 4.0" in result.infotext and "LCM-LoRA warning: CFG 4 > 2" in result.infotext
    # Guidance 4 needs the negative-prompt pass: two rows per step, at the reference timesteps of strength 1.
    assert (probe["calls"], probe["rows"]) == (4, 8) and probe["timesteps"] == lcm_timesteps(4, strength=1.0)
    pixels, original = np.asarray(result.image.convert("RGB"), dtype=np.int16), np.asarray(init, dtype=np.int16)
    assert np.abs(pixels[:8, :8] - original[:8, :8]).max() <= 2  # outside the mask the host keeps the original
    assert np.abs(pixels[24:40, 24:40] - original[24:40, 24:40]).mean() > 5


def png_b64_of(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def our_errors(server: WebUIServer) -> list[str]:
    """Log lines that are a traceback frame in our files, or an error/warning naming our extension."""
    ours = (f"/{EXTENSION_NAME}/", str(REPO_ROOT) + "/", "lcm-lora", "lcm_lora", "lib_lcm")
    # The host's git-info read of the linked checkout (it has no "origin" remote): the harness, not us.
    host_git_info = "Failed reading extension data from Git repository"
    suspicious = re.compile(r"error|failed|exception|traceback|warning", re.IGNORECASE)
    # The guard rail's console line for a setting a test chose (the inpainting example's CFG 4) is output, not error.
    guard_rail = re.compile(r"^LCM-LoRA warning: (CFG [\d.]+ > 2|\d+ steps > 8)")
    lines = [line for line in server.log_text().splitlines()
             if host_git_info not in line and not guard_rail.match(line)]
    frames = [line for line in lines if re.search(r'File "[^"]+"', line) and any(p in line for p in ours[:2])]
    return frames + [line for line in lines if suspicious.search(line) and any(p in line.lower() for p in ours)]


def test_no_error_or_traceback_from_our_extension_in_the_log(neighbours):
    server, _, _, _ = neighbours
    assert our_errors(server) == []


def test_old_animatediff_lcm_sampler_leaves_ours_unique_and_working(old_animatediff, webui_version):
    client = old_animatediff.client()
    names = [sampler["name"] for sampler in client.get("/sdapi/v1/samplers")]
    if webui_version >= HOST_LCM_SINCE:
        assert names.count("LCM") == 2  # the host's and AnimateDiff's: the collision of sd-webui-animatediff#413
        assert sorted(n for n in set(names) if names.count(n) > 1) == ["LCM"]
    else:  # no built-in "LCM" before 1.8: AnimateDiff's is the only one
        assert names.count("LCM") == 1
        assert sorted(n for n in set(names) if names.count(n) > 1) == []
    assert names.count("LCM-LoRA") == 1 and names.count("LCM-LoRA TCD") == 1
    infotext, probe = generate(client, alwayson_scripts=LCM_ON)
    assert_lcm_infotext(infotext)
    assert (probe["calls"], probe["rows"]) == (4, 4) and probe["timesteps"] == REFERENCE_TIMESTEPS
    assert our_errors(old_animatediff) == []
