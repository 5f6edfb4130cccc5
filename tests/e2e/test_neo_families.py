"""The Forges' model families without an LCM-LoRA (Flux, Chroma, Qwen-Image, Wan, ...), on the real host.

- The committed released layouts of those families (tests/fixtures/released_layouts/neo_*.txt, which the detection's
  unit tests read) are still what Forge Neo's own classes and model detection give (dump_neo_family_layouts.py);
  the same run asks Neo's detection about SD 1.5, SDXL and SSD-1B.
- With a Flux.1-dev checkpoint selected (its real header over a sparse file: the Forges load a checkpoint at the next
  generation, so selecting it loads nothing), the panel's status line names the family and says what LCM-LoRA is
  for, and nothing else changes: options, samplers, the log. No host here can load such a model (its T5 text encoder
  alone is 4.7 B parameters); the generation's message for it is unit-tested (tests/test_dit_families.py).
"""
from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_api_auth import fetch, refresh_fn_index
from tests.fixtures import dit_layouts

DUMP = Path(__file__).resolve().parent / "dump_neo_family_layouts.py"
FLUX_FILE = "flux1-dev.safetensors"


def has_neos_detection(installation) -> bool:
    return (installation.webui_dir / "modules_forge" / "packages" / "huggingface_guess" / "detection.py").is_file()


def test_committed_layouts_are_neos_own_classes_and_detection(webui_installation):
    if not has_neos_detection(webui_installation):
        pytest.skip("the host has no Forge Neo model detection (modules_forge/packages/huggingface_guess)")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(webui_installation.python), str(DUMP)], cwd=webui_installation.webui_dir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    dumped = json.loads(done.stdout.split("LAYOUTS ", 1)[1])
    for stem, (_, neo_class) in dit_layouts.NEO_FAMILIES.items():
        assert dumped["neo_classes"][stem] == neo_class
        assert dit_layouts.parse_layout("\n".join(dumped["layouts"][stem])) == dit_layouts.neo_layout(stem), stem
    assert set(dumped["layouts"]) == set(dit_layouts.NEO_FAMILIES)
    answers = dumped["ldm_unets"]
    assert (answers["sd1"], answers["sdxl"]) == ("SD15", "SDXL")
    # Neo's model list has no SSD-1B (SDXL's entry wants 10 transformer blocks in the last levels): its loader
    # stops with this error before any extension code runs. Fails when Neo learns SSD-1B.
    assert answers["ssd1b"] == "ModuleNotFoundError: Failed to recognize model...", answers["ssd1b"]


def status_line(server) -> str:
    """The txt2img panel's status line, from its (hidden) Refresh button's server function over gradio's HTTP."""
    opener = urllib.request.build_opener()
    status, text = fetch(opener, server.base_url + "/config")
    assert status == 200
    call = {"fn_index": refresh_fn_index(json.loads(text), "lcm_lora_txt2img_refresh"),
            "data": ["LCM-LoRA", 4], "session_hash": "lcm-lora-e2e-families"}  # the panel's Family, Steps
    status, text = fetch(opener, server.base_url + "/run/predict", call)
    assert status == 200, text[:500]
    line = json.loads(text)["data"][0]
    return line["value"] if isinstance(line, dict) else line  # an update (gradio 3) or the value itself


def test_a_selected_flux_checkpoint_is_named_in_the_panel_and_nothing_else_changes(webui_installation, webui_ui,
                                                                                   webui_ui_server):
    if not (webui_installation.webui_dir / "modules_forge" / "main_entry.py").is_file():
        pytest.skip("the host loads a checkpoint as soon as it is selected (Forge 2 and Neo: at the next generation)")
    server = webui_ui_server
    folder = server.data_dir.root / "models" / "Stable-diffusion"
    dit_layouts.write_sparse_checkpoint(folder / FLUX_FILE, dit_layouts.neo_layout("flux-dev"))
    sd15 = webui_ui.get("/sdapi/v1/options")["sd_model_checkpoint"]
    webui_ui.post("/sdapi/v1/refresh-checkpoints")
    assert any(model["filename"].endswith(FLUX_FILE) for model in webui_ui.get("/sdapi/v1/sd-models"))
    assert 'data-lcm-stem="lcm-lora-sdv1-5"' in status_line(server)
    options, samplers = webui_ui.get("/sdapi/v1/options"), webui_ui.get("/sdapi/v1/samplers")
    log_lines = len(server.log_text().splitlines())
    try:
        webui_ui.post("/sdapi/v1/options", {"sd_model_checkpoint": FLUX_FILE})
        line = status_line(server)
        assert "Checkpoint <b>flux1-dev</b> (Flux.1)" in line and 'data-lcm-stem=""' in line, line
        assert "LCM-LoRA is not supported for this model (it exists for SD 1.5, SDXL and SSD-1B" in line, line
        after = webui_ui.get("/sdapi/v1/options")
        assert {k: v for k, v in after.items() if k != "sd_model_checkpoint"} == \
            {k: v for k, v in options.items() if k != "sd_model_checkpoint"}
        assert webui_ui.get("/sdapi/v1/samplers") == samplers
        new_lines = server.log_text().splitlines()[log_lines:]
        assert not [text for text in new_lines if "Traceback" in text or "LCM-LoRA" in text], new_lines
    finally:
        webui_ui.post("/sdapi/v1/options", {"sd_model_checkpoint": sd15})
        (folder / FLUX_FILE).unlink()
        webui_ui.post("/sdapi/v1/refresh-checkpoints")
    assert 'data-lcm-stem="lcm-lora-sdv1-5"' in status_line(server)
