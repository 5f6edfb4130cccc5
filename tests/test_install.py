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

from lib_lcm.weights.download import ensure_weights
from lib_lcm.weights.lora_files import LoraFiles, state_folder, weights_status
from tests.fakehub import UNRESOLVABLE_URL, FakeHub, SilentListener, dns_failure_hook, refused_url
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
        (self.root / "launch.py").write_text("")
        self.checkpoints = self.root / "models" / "Stable-diffusion"
        self.checkpoints.mkdir(parents=True)

    def env(self, **extra) -> dict:
        """The environment the WebUI gives install.py; a None value in ``extra`` removes that variable."""
        env = super().env()
        env.update(PYTHONPATH=str(self.root), LCM_LORA_INSTALL_TIMEOUT="120", COMMANDLINE_ARGS="")
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

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
def test_hub_problems_give_one_line_and_exit_zero(webui, problem):
    webui.hub.status = 404 if problem == "not-found" else 503
    done = webui.install()
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1, done.stdout
    assert ("not found" if problem == "not-found" else "HTTP 503") in done.stdout
    assert "first use" in done.stdout and "Traceback" not in done.stdout + done.stderr


BUDGET_S = 15.0  # what install.py may add to a WebUI launch in any network state (issue 12)


@pytest.mark.parametrize("network", ["silent", "refused", "dns-failure"])
def test_an_unreachable_hub_adds_at_most_15_s_for_all_variants(webui, network):
    """Weights missing, all three wanted, a hub that never answers / refuses / does not resolve: install.py
    returns within the budget (default LCM_LORA_INSTALL_TIMEOUT) with one line, and its worker tries the
    network once, not once per variant, and leaves no lock or partial file behind."""
    env = {"LCM_LORA_DOWNLOAD": "all", "LCM_LORA_INSTALL_TIMEOUT": None}
    with SilentListener() as silent:
        if network == "silent":
            env["HF_ENDPOINT"] = silent.url
        elif network == "refused":
            env["HF_ENDPOINT"] = refused_url()
        else:
            env["HF_ENDPOINT"] = UNRESOLVABLE_URL
            env["PYTHONPATH"] = f"{dns_failure_hook(webui.tmp / 'no-dns')}{os.pathsep}{webui.root}"
        started = time.monotonic()
        done = webui.install(**env)
        added = time.monotonic() - started
        _wait_for_worker(done.stdout)
    print(f"install.py with a {network} hub and three variants missing: {added:.1f} s; {done.stdout}")
    assert added < BUDGET_S, f"{added:.1f} s"
    assert done.returncode == 0 and done.stderr == "" and len(done.stdout.splitlines()) == 1, done.stdout
    assert done.stdout.startswith("LCM-LoRA: ") and ("first use" in done.stdout or "background" in done.stdout)
    log = (state_folder(webui.lora_dir) / "download.log").read_text()
    assert log.count("LCM-LoRA: sd15: ") == 1 and "not trying sdxl, ssd1b" in log, log
    assert "LCM-LoRA: sdxl: " not in log and "LCM-LoRA: ssd1b: " not in log
    left = sorted(p.relative_to(webui.lora_dir).as_posix() for p in webui.lora_dir.rglob("*") if p.is_file())
    assert left == ["LCM-LoRA/.state/download.log"], left
    assert webui.hub.requests == []


def _wait_for_worker(stdout: str) -> None:
    """When install.py left its worker running, wait (bounded) until it is done: its lock is released then."""
    pid = re.search(r"pid (\d+)", stdout)
    deadline = time.monotonic() + 60
    while pid and _alive(int(pid[1])) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_no_op_start_with_every_variant_makes_no_request(webui):
    for variant in ("sd15", "sdxl", "ssd1b"):
        webui.ensure(variant)
    webui.hub.requests.clear()
    done = webui.install(LCM_LORA_DOWNLOAD="all")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert webui.hub.requests == []


def test_outside_a_webui_install_py_writes_nothing(webui, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, str(INSTALL)], cwd=elsewhere, capture_output=True, text=True, timeout=60,
                          env=webui.env(PYTHONPATH=str(elsewhere)))
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1 and "no WebUI found" in done.stdout
    assert list(elsewhere.iterdir()) == [] and not (ROOT.parent / "models").exists()
    assert webui.hub.requests == []


def test_broken_registry_does_not_stop_the_launch(webui):
    broken = webui.tmp / "broken.json"
    broken.write_text("{")
    done = webui.install(LCM_LORA_REGISTRY=str(broken))
    assert done.returncode == 0
    assert str(broken) in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_a_slow_hub_adds_at_most_15_s_and_the_download_finishes_in_background(webui):
    webui.hub.gate = threading.Event()  # the hub answers HEAD, then holds every transfer
    started = time.monotonic()
    done = webui.install(LCM_LORA_DOWNLOAD="all", LCM_LORA_INSTALL_TIMEOUT=None)
    added = time.monotonic() - started
    pid = re.search(r"pid (\d+)", done.stdout)
    try:
        assert done.returncode == 0 and "background" in done.stdout and pid, done.stdout + done.stderr
        assert len(done.stdout.splitlines()) == 1
        assert added < BUDGET_S, f"{added:.1f} s"
        assert webui.hub.get_started.wait(60), "the background download never started"
        assert not webui.on_disk("sd15").target.exists()
        webui.hub.gate.set()
        # Same call as the WebUI's first use: waits on the worker's lock, then sees its verified file.
        lines = []
        path = ensure_weights("sd15", webui.lora_dir, registry=webui.registry, endpoint=webui.hub.url,
                              lock_timeout=60, log=lines.append)
        _wait_for_worker(done.stdout)
    finally:
        webui.hub.gate.set()
        if pid and _alive(int(pid[1])):
            os.kill(int(pid[1]), signal.SIGKILL)
    assert path.read_bytes() == webui.payload["sd15"]
    assert all(webui.on_disk(v).is_installed() for v in ("sd15", "sdxl", "ssd1b"))
    assert not any(line.startswith("LCM-LoRA: downloading ") for line in lines)  # the worker's transfer, shared
    assert list(webui.lora_dir.rglob("*.lock")) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
