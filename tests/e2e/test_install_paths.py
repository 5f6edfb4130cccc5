"""Installing the extension the way users do, into a real WebUI, from this repository's committed HEAD.

(a) The WebUI's own "Install from URL" (``modules.ui_extensions.install_extension_from_url``) with a ``file://``
    URL: the WebUI clones the repository and runs install.py at once, which fetches the LCM-LoRA from a local
    stand-in for the Hugging Face hub; after a restart (offline) the extension generates with that file.
(b) ``git clone`` into ``extensions/`` under another folder name, then a start: install.py runs in the
    start-up's prepare step and fetches the file; the WebUI then generates with it.

Flags reach install.py only through ``COMMANDLINE_ARGS`` (it runs as ``python install.py``), so ``--data-dir`` is
given there, as users do in webui-user.sh.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import PROBE_EXTENSION
from tests.e2e.webui import OFFLINE_ENV, REPO_ROOT, DataDir, WebUIServer
from tests.fakehub import FakeHub

pytestmark = pytest.mark.e2e

STEM = "lcm-lora-sdv1-5"
INSTALL_FROM_URL = Path(__file__).resolve().parent / "install_from_url.py"
GENERATION = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "width": 64, "height": 64, "seed": 7,
              "override_settings": {"live_previews_enable": False},
              "alwayson_scripts": {"LCM-LoRA": {"args": [{"enabled": True}]}}}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def published_repo(tmp_path_factory) -> Path:
    """A bare clone of this repository's HEAD, named like the published repository."""
    bare = tmp_path_factory.mktemp("remote") / "sd-webui-lcm-lora.git"
    git("clone", "--quiet", "--bare", str(REPO_ROOT), str(bare))
    return bare


@pytest.fixture
def hub(tiny_webui_models):
    """The stand-in hub serving the (test) SD1.5 LCM-LoRA where the (test) registry says it is."""
    registry = json.loads(Path(tiny_webui_models["registry"]).read_text())
    entry = registry["variants"]["sd15"]
    with FakeHub() as fake:
        fake.add(entry["repo_id"], entry["filename"], tiny_webui_models["sd15_lcm_lora"].read_bytes(),
                 commit=entry["revision"])
        yield fake


def empty_data_dir(tmp_path_factory, tiny_webui_models) -> DataDir:
    """A data dir with the SD1.5 checkpoint (tiny; on Forge the real-width one), no LoRA and only the UNet-counting probe extension."""
    root = tmp_path_factory.mktemp("install") / "data"
    return DataDir.create(root, [tiny_webui_models["sd15_checkpoint"]], {}, extensions={"lcm-test-probe": PROBE_EXTENSION})


def user_env(data_dir: DataDir, webui_env, hub: FakeHub | None = None) -> dict[str, str]:
    """webui-user.sh's COMMANDLINE_ARGS with the data dir; with ``hub``: online, against the stand-in hub."""
    env = {**webui_env, "COMMANDLINE_ARGS": f"--data-dir {shlex.quote(str(data_dir.root))}"}
    if hub is not None:
        env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", LCM_LORA_INSTALL_TIMEOUT="300")
    return env


def installed_lora(data_dir: DataDir) -> Path:
    return data_dir.root / "models" / "Lora" / "LCM-LoRA" / f"{STEM}.safetensors"


def generate_after_start(server: WebUIServer) -> tuple[str, dict]:
    """Start ``server`` and make one LCM-LoRA image: (infotext, UNet probe counts)."""
    client = server.start()
    client.post("/lcm-test/v1/unet/reset")
    result = client.txt2img(**GENERATION)
    return result.infotext, client.get("/lcm-test/v1/unet")


def assert_generated_with_the_installed_lora(infotext: str, probe: dict) -> None:
    assert f"LCM-LoRA: {STEM}" in infotext and "Sampler: LCM-LoRA," in infotext
    assert f'Lora hashes: "{STEM}: ' in infotext and "Lora not found" not in infotext
    assert (probe["calls"], probe["rows"]) == (4, 4)  # 4 steps, CFG 1: no unconditional pass


def test_install_from_url_runs_install_py_at_once_and_works_after_restart(
    webui_installation, tiny_webui_models, webui_env, published_repo, hub, tmp_path_factory, webui_factory
):
    webui_factory.make_room()  # Forge: one server at a time
    data_dir = empty_data_dir(tmp_path_factory, tiny_webui_models)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **OFFLINE_ENV, **user_env(data_dir, webui_env, hub)}
    if webui_installation.is_forge:  # the script imports Forge's memory manager, which needs its CPU flag
        env["COMMANDLINE_ARGS"] += " " + " ".join(webui_installation.forge_args)
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    installed = subprocess.run(
        [str(webui_installation.python), str(INSTALL_FROM_URL), f"file://{published_repo}"],
        cwd=webui_installation.webui_dir, env=env, capture_output=True, text=True, timeout=600,
    )
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output[-4000:]

    extension = data_dir.root / "extensions" / "sd-webui-lcm-lora"
    assert f"Installed into {extension}" in output
    assert git("-C", str(extension), "rev-parse", "HEAD") == git("-C", str(published_repo), "rev-parse", "HEAD")
    # install.py ran right away: the file is there before any (re)start, fetched from the hub.
    assert installed_lora(data_dir).is_file(), output[-4000:]
    assert sha256(installed_lora(data_dir)) == sha256(tiny_webui_models["sd15_lcm_lora"])
    fetched = len(hub.gets())
    assert fetched >= 1

    server = WebUIServer(webui_installation, data_dir, extra_env=user_env(data_dir, webui_env))
    try:
        server.prepare()
        # At the restart install.py finds the file present and verified: not a line, no network.
        assert "LCM-LoRA:" not in server.prepare_log_path.read_text(errors="replace")
        infotext, probe = generate_after_start(server)
    finally:
        server.stop()
    assert_generated_with_the_installed_lora(infotext, probe)
    assert len(hub.gets()) == fetched  # nothing fetched again


def test_git_clone_into_extensions_then_start(
    webui_installation, tiny_webui_models, webui_env, published_repo, hub, tmp_path_factory, webui_factory
):
    webui_factory.make_room()  # Forge: one server at a time
    data_dir = empty_data_dir(tmp_path_factory, tiny_webui_models)
    extension = data_dir.root / "extensions" / "lcm-lora"  # any folder name works
    git("clone", "--quiet", f"file://{published_repo}", str(extension))

    server = WebUIServer(webui_installation, data_dir, extra_env=user_env(data_dir, webui_env, hub))
    try:
        server.prepare()
        assert installed_lora(data_dir).is_file(), server.prepare_log_path.read_text(errors="replace")[-4000:]
        assert sha256(installed_lora(data_dir)) == sha256(tiny_webui_models["sd15_lcm_lora"])
        assert hub.gets()
        # Offline from here: the image can only come from the file the prepare step installed.
        server.extra_env = user_env(data_dir, webui_env)
        infotext, probe = generate_after_start(server)
    finally:
        server.stop()
    assert_generated_with_the_installed_lora(infotext, probe)
