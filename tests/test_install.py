"""install.py run the way A1111 1.10 runs it: `python install.py` in a subprocess, cwd = the WebUI root,
PYTHONPATH = the WebUI root, launch flags only in COMMANDLINE_ARGS (modules/launch_utils.py)."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib_lcm.download import ensure_weights
from lib_lcm.lora_files import LoraFiles, weights_status
from tests.fakehub import FakeHub
from tests.fixtures import layouts
from tests.test_download import Site

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "install.py"
HEAVY = ("torch", "huggingface_hub", "safetensors", "numpy", "requests", "httpx", "filelock")


class Webui(Site):
    """A dummy WebUI root (what PYTHONPATH points at) next to the fake hub."""

    def __init__(self, hub, tmp):
        (tmp / "webui").mkdir()
        super().__init__(hub, tmp / "webui")
        self.root = self.tmp
        (self.root / "modules").mkdir(parents=True)
        (self.root / "modules" / "paths_internal.py").write_text("")
        self.checkpoints = self.root / "models" / "Stable-diffusion"
        self.checkpoints.mkdir(parents=True)

    def env(self, **extra) -> dict:
        env = super().env()
        env.update(PYTHONPATH=str(self.root), LCM_LORA_INSTALL_TIMEOUT="120", COMMANDLINE_ARGS="")
        env.update(extra)
        return env

    def install(self, **extra) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(INSTALL)], cwd=self.root, env=self.env(**extra),
                              capture_output=True, text=True, timeout=180)

    def add_checkpoint(self, label: str) -> Path:
        """A header-only safetensors checkpoint of the real model family ``label``."""
        header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]}
                  for k, v in layouts.real_checkpoint_shapes(label).items()}
        raw = json.dumps(header).encode()
        path = self.checkpoints / f"{label}-model.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw)) + raw)
        return path


@pytest.fixture
def webui(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "LCM_LORA_REGISTRY", "LCM_LORA_DOWNLOAD"):
        monkeypatch.delenv(name, raising=False)
    with FakeHub() as hub:
        yield Webui(hub, tmp_path)


def test_fast_path_makes_no_request_prints_nothing_and_imports_nothing_heavy(webui):
    webui.ensure("sd15")
    webui.hub.requests.clear()
    done = webui.install()
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert webui.hub.requests == []
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{str(INSTALL)!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(INSTALL)!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    print('EXIT', exit.code)\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=webui.root, env=webui.env(),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["EXIT 0", "HEAVY []"], out.stdout + out.stderr
    assert webui.hub.requests == []


def test_hand_placed_file_is_verified_once_without_network(webui):
    final = webui.on_disk("sd15").target
    final.parent.mkdir(parents=True)
    final.write_bytes(webui.payload["sd15"])
    done = webui.install()
    assert done.returncode == 0 and done.stdout == f"LCM-LoRA: {final} verified (sha256).\n", done.stdout
    assert webui.install().stdout == ""
    assert webui.hub.requests == []


def test_missing_weights_go_to_the_commandline_lora_dir(webui):
    lora_dir = webui.tmp / "my loras"
    args = f"--xformers --lora-dir {shlex.quote(str(lora_dir))} --api"
    done = webui.install(COMMANDLINE_ARGS=args)
    assert done.returncode == 0, done.stdout + done.stderr
    final = LoraFiles(webui.entry("sd15"), lora_dir).target
    assert final.read_bytes() == webui.payload["sd15"]
    assert "installed" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert not (webui.root / "models" / "Lora").exists()


def test_auto_mode_fetches_the_variant_of_the_checkpoints_found(webui):
    webui.add_checkpoint("sdxl")
    done = webui.install()
    assert done.returncode == 0, done.stdout + done.stderr
    assert webui.on_disk("sdxl").is_installed()
    assert not webui.on_disk("sd15").target.exists()


def test_explicit_variant_list_and_none(webui):
    assert webui.install(LCM_LORA_DOWNLOAD="none").stdout == ""
    assert webui.hub.requests == []
    done = webui.install(LCM_LORA_DOWNLOAD="sdxl,ssd1b")
    assert done.returncode == 0, done.stdout + done.stderr
    installed = [row["variant"] for row in weights_status(webui.lora_dir, webui.registry) if row["verified"]]
    assert installed == ["sdxl", "ssd1b"]


def test_offline_skips_at_once_with_one_line(webui):
    done = webui.install(HF_HUB_OFFLINE="1")
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1 and "first use" in done.stdout
    assert webui.hub.requests == []


@pytest.mark.parametrize("problem", ["not-found", "server-error"])
def test_hub_problems_give_a_message_and_exit_zero(webui, problem):
    webui.hub.status = 404 if problem == "not-found" else 503
    done = webui.install()
    assert done.returncode == 0
    assert ("not found" if problem == "not-found" else "HTTP 503") in done.stdout
    assert "first use" in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_broken_registry_does_not_stop_the_launch(webui):
    broken = webui.tmp / "broken.json"
    broken.write_text("{")
    done = webui.install(LCM_LORA_REGISTRY=str(broken))
    assert done.returncode == 0
    assert str(broken) in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_start_up_wait_is_bounded_and_the_download_finishes_in_background(webui):
    webui.hub.gate = threading.Event()
    started = time.monotonic()
    done = webui.install(LCM_LORA_INSTALL_TIMEOUT="1")
    returned_after = time.monotonic() - started
    pid = re.search(r"pid (\d+)", done.stdout)
    try:
        assert done.returncode == 0 and "background" in done.stdout and pid, done.stdout + done.stderr
        assert returned_after < 60
        assert webui.hub.get_started.wait(60), "the background download never started"
        assert not webui.on_disk("sd15").target.exists()
        webui.hub.gate.set()
        # Same call as the WebUI's first use: waits on the worker's lock, then sees its verified file.
        path = ensure_weights("sd15", webui.lora_dir, registry=webui.registry, endpoint=webui.hub.url,
                              lock_timeout=60, log=None)
    finally:
        webui.hub.gate.set()
        if pid and _alive(int(pid[1])):
            os.kill(int(pid[1]), signal.SIGKILL)
    assert path.read_bytes() == webui.payload["sd15"]
    assert len(webui.hub.gets()) == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
