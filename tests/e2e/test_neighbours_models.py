"""The neighbours suite at SD 1.5's full UNet size: the LCM-LoRA model card's ControlNet canny example and
AnimateDiff video, in one real WebUI with the real sd-webui-controlnet and sd-webui-animatediff.

Part of tests/e2e/test_neighbours.py's suite (same ``LCM_NEIGHBOURS_DIR``; read its docstring for the pip caveat).
The server loads the slim checkpoint (tests/fixtures/slim.py: SD 1.5's UNet exactly, random weights) with its
rank-64 LCM-LoRA, and the full-size random stand-ins of tests/fixtures/neighbour_models.py: an SD 1.5 canny
ControlNet and AnimateDiff v3 / AnimateLCM motion modules (both built and cached on first use, ~4.2 GB with the slim
model). On the Forges (``LCM_E2E_FORGE_MODELS``: their SD 1.5 checkpoint): their built-in ControlNet with the same
stand-in (AnimateDiff's Forge branch: tests/e2e/test_neighbours_forge_animatediff.py). Counted by the probe
extension: UNet calls, rows and timesteps, and the calls of ControlNet's `ControlNet` and AnimateDiff's
`VanillaTemporalModule` modules.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from lib_lcm.schedules import lcm_timesteps
from tests.e2e.conftest import EXTENSION_NAME, PROBE_EXTENSION, tiny_registry
from tests.e2e.test_neighbours import (
    BASE,
    NEIGHBOURS_ENV,
    REFERENCE_TIMESTEPS,
    assert_lcm_infotext,
    generate,
    load_scripts,
    our_errors,
    present_neighbours,
)
from tests.e2e.webui import REPO_ROOT, DataDir, WebUIServer
from tests.fixtures import neighbour_models, slim

pytestmark = pytest.mark.e2e
CONTROLNET_MODEL = Path(neighbour_models.CONTROLNET_FILE).stem
FRAMES = 8
# Per UNet call of an SD 1.5 UNet: 8 motion modules in the down blocks and 12 in the up blocks (v3), +1 in the
# middle block (AnimateLCM).
MOTION_MODULES_PER_CALL = {neighbour_models.MOTION_MODULE_FILE: 20, neighbour_models.ANIMATELCM_FILE: 21}


@pytest.fixture(scope="module")
def full_size(webui_installation, tmp_path_factory):
    """(server, client, present neighbour names) with the slim checkpoint and the stand-ins in place."""
    if webui_installation.is_forge:
        pytest.skip("the neighbour extensions run on A1111 (Forge: its built-in ControlNet, below)")
    found = present_neighbours()
    root = tmp_path_factory.mktemp("neighbours-full-size")
    models, stand_ins = slim.cached(), neighbour_models.cached()
    shipped = json.loads((REPO_ROOT / "lib_lcm" / "weights" / "registry.json").read_text())
    registry = root / "weights_registry.json"
    registry.write_text(json.dumps(tiny_registry(shipped, {"sd15": models.lcm_lora}), indent=2))
    extensions = {**found, EXTENSION_NAME: REPO_ROOT, "lcm-test-probe": PROBE_EXTENSION}
    data_dir = DataDir.create(root / "data", [models.checkpoint], {f"LCM-LoRA/{models.lcm_lora.name}": models.lcm_lora},
                              extensions)
    controlnet_dir = data_dir.root / "models" / "ControlNet"
    controlnet_dir.mkdir(parents=True, exist_ok=True)
    (controlnet_dir / stand_ins.controlnet.name).symlink_to(stand_ins.controlnet)
    server = WebUIServer(installation=webui_installation, data_dir=data_dir,
                         extra_env={"LCM_LORA_REGISTRY": str(registry)})
    try:
        server.prepare(timeout=900)
        server.start(timeout=600)
        client = server.client()
        load_scripts(client)
        # AnimateDiff reads motion modules from one folder (its setting; default: inside its own checkout)
        client.post("/sdapi/v1/options", {"animatediff_model_path": str(stand_ins.motion_module.parent)})
        yield server, client, set(found)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def forge_neighbours(webui_installation, tiny_webui_models, webui_env, tmp_path_factory):
    """(server, client): a Forge with its built-in ControlNet, the stand-in ControlNet and Forge's SD 1.5 checkpoint
    (``LCM_E2E_FORGE_MODELS``: SD 1.5's UNet with the full CLIP-L and VAE Forge builds)."""
    if not webui_installation.is_forge:
        pytest.skip("Forge's built-in ControlNet: runs on the Forges")
    with forge_server(webui_installation, tiny_webui_models, webui_env, tmp_path_factory.mktemp("forge-cn")) as server:
        yield server, server.client()


@contextlib.contextmanager
def forge_server(installation, tiny_webui_models, webui_env, root: Path, extensions=None, config=None):
    """A started Forge with ours, the probe, ``extensions``, the stand-in ControlNet in its ControlNet folder and
    ``config`` as its config.json (the Forges' /sdapi/v1/options cannot set an extension's setting: footnote 5)."""
    data_dir = DataDir.create(root / "data", [tiny_webui_models["sd15_checkpoint"]], tiny_webui_models["loras"],
                              {**(extensions or {}), EXTENSION_NAME: REPO_ROOT, "lcm-test-probe": PROBE_EXTENSION})
    controlnet_dir = data_dir.root / "models" / "ControlNet"
    controlnet_dir.mkdir(parents=True, exist_ok=True)
    (controlnet_dir / neighbour_models.CONTROLNET_FILE).symlink_to(neighbour_models.cached().controlnet)
    if config:
        (data_dir.root / "config.json").write_text(json.dumps(config))
    server = WebUIServer(installation=installation, data_dir=data_dir, extra_env=dict(webui_env))
    try:
        server.prepare(timeout=900)
        server.start(timeout=600)
        yield server
    finally:
        server.stop()


def need(found: set, name: str) -> None:
    if name not in found:
        pytest.skip(f"{name} is not in {NEIGHBOURS_ENV}")


def png_b64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def edge_source():
    """A white disc and bar on black: canny finds their outlines."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((12, 12, 44, 44), fill=(255, 255, 255))
    draw.rectangle((40, 8, 52, 56), fill=(200, 200, 200))
    return image


def controlnet_model(client) -> str:
    """The stand-in's name as the ControlNet in use lists it (with or without a hash)."""
    names = client.get("/controlnet/model_list")["model_list"]
    return next(name for name in names if name.startswith(CONTROLNET_MODEL))


def canny_unit(model: str = CONTROLNET_MODEL, weight: float = 0.8) -> dict:
    return {"enabled": True, "module": "canny", "model": model, "image": png_b64(edge_source()),
            "weight": weight, "processor_res": 64, "threshold_a": 100, "threshold_b": 200,
            "resize_mode": "Crop and Resize", "control_mode": "Balanced", "pixel_perfect": False}


def counted(client, generate, modules: tuple[str, ...]):
    """(result, UNet probe, {module class: counts}) of one generation."""
    client.post("/lcm-test/v1/unet/reset")
    client.post("/lcm-test/v1/modules", {"names": list(modules)})
    started = time.perf_counter()
    result = generate()
    seconds = time.perf_counter() - started
    unet, counts = client.get("/lcm-test/v1/unet"), client.get("/lcm-test/v1/modules")
    # For the record (pytest -s or -rP), not asserted: what one generation cost on this machine.
    print(f"neighbours: {seconds:.1f} s wall, UNet {unet['calls']} calls / {unet['rows']} rows, {counts}")
    return result, unet, counts


def lcm(cfg_scale: float) -> dict:
    return {"LCM-LoRA": {"args": [{"enabled": True, "steps": 4, "cfg_scale": cfg_scale}]}}


@pytest.mark.parametrize("cfg_scale, rows_per_call", [(1.5, 2), (1.0, 1)])
def test_controlnet_canny_model_card_example_with_lcm(full_size, cfg_scale, rows_per_call):
    import numpy as np

    server, client, found = full_size
    need(found, "sd-webui-controlnet")
    scripts = {**lcm(cfg_scale), "controlnet": {"args": [canny_unit()]}}
    result, unet, modules = counted(client, lambda: client.txt2img(**BASE, alwayson_scripts=scripts), ("ControlNet",))
    without = client.txt2img(**BASE, alwayson_scripts=lcm(cfg_scale))
    assert_lcm_infotext(result.infotext)
    assert f'Module: canny, Model: {CONTROLNET_MODEL}' in result.infotext and "Weight: 0.8" in result.infotext
    assert f"CFG scale: {cfg_scale}" in result.infotext
    assert (unet["calls"], unet["rows"], unet["timesteps"]) == (4, 4 * rows_per_call, REFERENCE_TIMESTEPS)
    # ControlNet runs once per UNet call, on the same rows
    assert modules["ControlNet"] == {"calls": 4, "rows": 4 * rows_per_call}
    image = np.asarray(result.image.convert("RGB"), dtype=np.float32)
    assert np.isfinite(image).all() and image.std() > 0
    assert not np.array_equal(image, np.asarray(without.image.convert("RGB"), dtype=np.float32))
    assert "ControlNet Error" not in server.log_text()


def test_controlnet_canny_img2img_with_lcm(full_size):
    server, client, found = full_size
    need(found, "sd-webui-controlnet")
    scripts = {**lcm(1.0), "controlnet": {"args": [canny_unit()]}}
    init = edge_source().convert("RGB")
    result, unet, modules = counted(client, lambda: client.img2img(
        init, **BASE, denoising_strength=0.6, alwayson_scripts=scripts), ("ControlNet",))
    assert_lcm_infotext(result.infotext)
    assert f'Module: canny, Model: {CONTROLNET_MODEL}' in result.infotext
    assert (unet["calls"], unet["rows"]) == (4, 4)
    assert unet["timesteps"] == lcm_timesteps(4, strength=0.6)
    assert modules["ControlNet"] == {"calls": 4, "rows": 4}
    assert "ControlNet Error" not in server.log_text()


@pytest.mark.parametrize("cfg_scale, rows_per_step", [(1.5, 2), (1.0, 1)])
def test_forge_builtin_controlnet_canny_with_lcm(forge_neighbours, cfg_scale, rows_per_step):
    import numpy as np

    server, client = forge_neighbours
    scripts = {**lcm(cfg_scale), "ControlNet": {"args": [canny_unit(controlnet_model(client))]}}
    log_before = len(server.log_text())
    result, unet, modules = counted(client, lambda: client.txt2img(**BASE, alwayson_scripts=scripts), ("ControlNet",))
    without = client.txt2img(**BASE, alwayson_scripts=lcm(cfg_scale))
    assert_lcm_infotext(result.infotext)
    assert "Module: canny" in result.infotext and f"Model: {CONTROLNET_MODEL}" in result.infotext
    # Forge runs cond and uncond rows in one UNet call where memory allows: count rows per step, and
    # ControlNet once per UNet call on the same rows. Above CFG 1 the negative-prompt rows run where the host's own
    # sampler runs them: every step, or (Forge Classic) every step but the first (test_lcm_webui's CFG test: why).
    assert unet["rows"] == hosts_euler_rows(client, cfg_scale)
    assert unet["rows"] in (4 * rows_per_step, 3 * rows_per_step + 1)
    assert unet["timesteps"][::unet["calls"] // 4] == REFERENCE_TIMESTEPS
    assert modules["ControlNet"] == {"calls": unet["calls"], "rows": unet["rows"]}
    image = np.asarray(result.image.convert("RGB"), dtype=np.float32)
    assert np.isfinite(image).all() and image.std() > 0
    assert not np.array_equal(image, np.asarray(without.image.convert("RGB"), dtype=np.float32))
    assert "Traceback" not in server.log_text()[log_before:]


def hosts_euler_rows(client, cfg_scale: float) -> int:
    """UNet rows of the host's own Euler, 4 steps at ``cfg_scale`` (no LCM-LoRA, no unit)."""
    return generate(client, sampler_name="Euler", steps=4, cfg_scale=cfg_scale)[1]["rows"]


def script_loading_error(server, script_file: str) -> str:
    """The exception line of the host's "Error loading script" report for ``script_file``; "" when it loaded."""
    lines = server.log_text().splitlines()
    start = next((i for i, line in enumerate(lines) if f"Error loading script: {script_file}" in line), None)
    if start is None:
        return ""
    return next((line.strip() for line in lines[start + 1:] if re.match(r"\s*\w+(Error|Exception)\b", line)), "?")


def has_animatelcm(animatediff_dir: Path) -> bool:
    """Whether this sd-webui-animatediff checkout knows AnimateLCM motion modules (a `MotionModuleType.AnimateLCM`,
    since 2024-07, tag v2.0.1-a). Older ones (v1.13.1) read the file as v2 and fail to load it: it stores no
    positional encodings ("Missing key(s) ... pos_encoder.pe")."""
    source = (animatediff_dir / "motion_module.py").read_text(encoding="utf-8")
    return re.search(r"^\s+AnimateLCM\s*=", source, re.MULTILINE) is not None


def animatediff(model: str) -> dict:
    return {"AnimateDiff": {"args": [{"enable": True, "model": model, "video_length": FRAMES, "batch_size": FRAMES,
                                      "fps": 8, "closed_loop": "N", "format": ["GIF", "Frame"]}]}}


MOTION_MODULES = [neighbour_models.MOTION_MODULE_FILE, neighbour_models.ANIMATELCM_FILE]


@pytest.mark.parametrize("model", MOTION_MODULES)
def test_animatediff_video_with_lcm_one_row_per_frame_per_step(full_size, model):
    server, client, found = full_size
    need(found, "sd-webui-animatediff")
    if model == neighbour_models.ANIMATELCM_FILE and not has_animatelcm(present_neighbours()["sd-webui-animatediff"]):
        pytest.skip("this sd-webui-animatediff has no AnimateLCM motion-module type (added 2024-07, v2.0.1-a)")
    assert_lcm_video(server, client, model)


def assert_lcm_video(server, client, model: str) -> None:
    """An 8-frame AnimateDiff video at CFG 1 with the LCM-LoRA panel on: the GIF and the frames, one UNet call per
    step with one row per frame, the motion modules once per UNet call, our sampler names unique."""
    error = script_loading_error(server, "animatediff.py")
    assert not error, f"sd-webui-animatediff does not load in this host (before any generation): {error}"
    scripts = {**lcm(1.0), **animatediff(model)}
    log_before = len(server.log_text())
    result, unet, modules = counted(client, lambda: client.txt2img(**BASE, alwayson_scripts=scripts),
                                    ("VanillaTemporalModule",))
    assert_lcm_infotext(result.infotext)
    # The GIF and the frames come back (the GIF first)
    assert len(result.images) >= FRAMES and any(getattr(i, "format", None) == "GIF" for i in result.images)
    assert getattr(next(i for i in result.images if i.format == "GIF"), "n_frames", 1) == FRAMES
    # CFG 1: the frame batch is one UNet call per step with one row per frame (no negative-prompt rows)
    assert (unet["calls"], unet["rows"], unet["timesteps"]) == (4, 4 * FRAMES, REFERENCE_TIMESTEPS)
    per_call = MOTION_MODULES_PER_CALL[model]
    assert modules["VanillaTemporalModule"] == {"calls": 4 * per_call, "rows": 4 * per_call * FRAMES}
    names = [sampler["name"] for sampler in client.get("/sdapi/v1/samplers")]
    assert names.count("LCM-LoRA") == 1 and names.count("LCM-LoRA TCD") == 1
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
    assert "Traceback" not in server.log_text()[log_before:]


def test_committed_released_layouts_are_the_checked_out_extensions_classes(webui_installation):
    """tests/fixtures/released_layouts/ (what the stand-ins and their unit tests follow) = the key sets and shapes
    of the extensions' own ControlNet and MotionWrapper classes in the checkouts under test."""
    if webui_installation.is_forge:
        pytest.skip("the extensions' classes import A1111's ldm modules")
    found = present_neighbours()
    need(found, "sd-webui-controlnet")
    need(found, "sd-webui-animatediff")
    script = Path(__file__).parent / "dump_neighbour_layouts.py"
    result = subprocess.run([str(webui_installation.python), str(script), str(found["sd-webui-controlnet"]),
                             str(found["sd-webui-animatediff"])], cwd=webui_installation.webui_dir,
                            capture_output=True, text=True, timeout=600)
    line = next((x for x in result.stdout.splitlines() if x.startswith("LAYOUTS ")), None)
    assert line, result.stderr[-3000:]
    released = Path(__file__).parents[1] / "fixtures" / "released_layouts"
    layouts = json.loads(line.removeprefix("LAYOUTS "))
    animatelcm = {"animatelcm_sd15"} if has_animatelcm(found["sd-webui-animatediff"]) else set()
    assert set(layouts) == {"controlnet_sd15", "mm_sd15_v3"} | animatelcm
    for name, lines in layouts.items():
        assert lines == (released / f"{name}.txt").read_text().splitlines(), name


def test_no_error_or_traceback_from_our_extension_in_the_log_with_the_forges_neighbours(forge_neighbours):
    assert errors_but_animatediffs_git_tag(forge_neighbours[0]) == []


def test_no_error_or_traceback_from_our_extension_in_the_log(full_size):
    assert errors_but_animatediffs_git_tag(full_size[0]) == []


def errors_but_animatediffs_git_tag(server) -> list[str]:
    # AnimateDiff runs `git describe` in its motion-module folder, here in the fixture cache, whose path
    # (~/.cache/sd-webui-lcm-lora/) names us: its warning is about that folder, not our code.
    return [line for line in our_errors(server) if "Failed to get git tag for AnimateDiff" not in line]
