"""Fixtures that run the real AUTOMATIC1111 WebUI (named by ``SD_WEBUI_DIR``) with this extension.

One server per session and mode: ``webui`` (``--nowebui --api``) and ``webui_ui`` (gradio UI + ``--api``),
each with its own temporary ``--data-dir`` holding the tiny fixture models, the tiny LCM-LoRAs under
``models/Lora/LCM-LoRA/`` and this repository linked as ``extensions/sd-webui-lcm-lora``. Override
``webui_args``/``webui_env``/``webui_extensions`` in a conftest to change what they start with, or call
``webui_factory`` for a server of your own (stopped at the end of the session). On Forge (SD 1.5-size models,
~9 GB per server) one server runs at a time: starting one stops the others, and ``webui``/``webui_ui`` restart
theirs when needed (:class:`WebUIFactory`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.e2e.webui import (
    EXTENSION_NAME,
    FORGE_BF16_UNET_FLAGS,
    REPO_ROOT,
    DataDir,
    Installation,
    WebUIClient,
    WebUIServer,
)
from tests.fixtures import full_width, slim, tiny

FORGE_MODELS_ENV = "LCM_E2E_FORGE_MODELS"
SKIP_REASON = "e2e: set SD_WEBUI_DIR (a prepared WebUI checkout) and SD_WEBUI_PYTHON to run the real-WebUI tests"
E2E_DIR = Path(__file__).resolve().parent
PROBE_EXTENSION = E2E_DIR / "probe_extension"

# Model family (tests.fixtures.full_width) -> the registry variant of its own LCM-LoRA.
FAMILY_VARIANTS = {"sdxl": "sdxl", "ssd1b": "ssd1b", "sdxl-inpainting": "sdxl"}
# Variant id -> the tiny fixture's LoRA file (named like the released files).
TINY_LCM_LORAS = {
    "sd15": tiny.LCM_LORA_FILES["sd1"],
    "sdxl": tiny.LCM_LORA_FILES["sdxl"],
    "ssd1b": tiny.LCM_LORA_FILES["ssd1b"],
}


def _require_installation() -> Installation:
    installation = Installation.from_env()
    if installation is None:
        pytest.skip(SKIP_REASON)
    return installation


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Raised here rather than by a fixture or mark so that all skips share one location: one summary line.
    if not os.environ.get("SD_WEBUI_DIR"):
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def webui_installation() -> Installation:
    """The prepared WebUI checkout and its python."""
    return _require_installation()


@pytest.fixture(scope="session")
def webui_version(webui_installation) -> tuple[int, int, int]:
    """The WebUI's release ``(major, minor, patch)``, for tests of a host feature some versions lack;
    an untagged checkout counts as newer than any release."""
    return webui_installation.version() or (999, 0, 0)


def _is_e2e(node) -> bool:
    path = getattr(node, "path", None)
    return path is not None and E2E_DIR in Path(path).resolve().parents


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cross_attention_width(path: Path) -> int | None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        for key in f.keys():
            if key.endswith("attn2_to_k.lora_down.weight"):
                return int(f.get_slice(key).get_shape()[-1])
    return None


def tiny_registry(shipped: Mapping, loras: Mapping[str, Path]) -> dict:
    """The shipped registry with each variant's file replaced by its tiny stand-in: size and sha256 of the
    tiny file, its cross-attention width, and verified (a fixed 40-hex revision where the shipped one is a branch)."""
    registry = json.loads(json.dumps(shipped))
    for variant, path in loras.items():
        entry = registry["variants"][variant]
        entry.update(size=path.stat().st_size, sha256=_sha256(path), verified=True)
        if not re.fullmatch(r"[0-9a-f]{40}", entry.get("revision", "")):
            entry["revision"] = "0" * 40
        width = _cross_attention_width(path)
        if width:
            entry["context_dim"] = width
    return registry


def forge_models() -> tuple[Path, Path]:
    """(SD 1.5 checkpoint, its LCM-LoRA) from ``$LCM_E2E_FORGE_MODELS``. Forge loads none of the tiny fixtures:
    it recognises SD 1.5 by its real widths (320 UNet channels, 768 context) and builds CLIP-L and the VAE from
    its own configs, so it needs a checkpoint with the full CLIP-L and VAE (a slim UNet is fine)."""
    folder = os.environ.get(FORGE_MODELS_ENV)
    if not folder:
        pytest.skip(f"e2e on Forge: set {FORGE_MODELS_ENV} to a folder with Stable-diffusion/<SD 1.5>.safetensors "
                    f"and Lora/{tiny.LCM_LORA_FILES['sd1']} (Forge cannot load the tiny fixtures)")
    built = {full_width.checkpoint_path(folder, family) for family in full_width.FAMILIES}
    preferred = Path(folder) / "Stable-diffusion" / slim.CHECKPOINT_NAME
    checkpoints = [preferred] if preferred.is_file() else sorted(
        path for path in (Path(folder) / "Stable-diffusion").glob("*.safetensors") if path not in built)
    lora = Path(folder) / "Lora" / tiny.LCM_LORA_FILES["sd1"]
    if not checkpoints or not lora.is_file():
        raise pytest.UsageError(f"{FORGE_MODELS_ENV}={folder} needs Stable-diffusion/*.safetensors and Lora/{lora.name}")
    return checkpoints[0], lora


def forge_full_width_models(folder: Path | str) -> dict[str, tuple[Path, Path | None]]:
    """family -> (checkpoint, its own LCM-LoRA or None) of the full-width models built in ``folder`` by
    ``python -m tests.fixtures.full_width`` (the families not built are left out)."""
    found = {}
    for family in full_width.FAMILIES:
        checkpoint, lora = full_width.checkpoint_path(folder, family), full_width.lora_path(folder, family)
        if checkpoint.is_file() and (lora is None or lora.is_file()):
            found[family] = (checkpoint, lora)
    return found


def forge_style_lora(checkpoint: Path, folder: Path) -> Path:
    """A kohya style LoRA named like the tiny one (``tiny-style-sd15``) with the shapes of the Forge checkpoint's
    UNet (SD 1.5's: the tiny one does not fit it), on the UNet's attention projections."""
    from lib_lcm.safetensors_header import read_shapes
    from tests.fixtures import layouts

    shapes = {key: shape for key, shape in read_shapes(checkpoint).items()
              if key.startswith("model.diffusion_model.")}
    path = folder / tiny.STYLE_LORA_FILE
    tiny.save_style_lora(path, layouts.lora_module_shapes(shapes, targets=tiny.STYLE_LORA_TARGETS))
    return path


@pytest.fixture(scope="session")
def tiny_webui_models(tmp_path_factory, webui_installation) -> dict:
    """Tiny checkpoints, LoRAs (relative Lora-folder name -> file) and the registry JSON describing them;
    ``sd15_checkpoint``/``sd15_lcm_lora``: the SD 1.5 checkpoint the servers load and its LCM-LoRA;
    ``family_checkpoints``: model family (sd15, sd15-inpainting, sdxl, ssd1b, sdxl-inpainting) -> the checkpoint
    of it this host loads (`family_checkpoint` skips a test whose family is missing).
    On Forge: the SD 1.5 checkpoint and LCM-LoRA of `forge_models`, a style LoRA of its shapes, and the full-width
    models built next to them (`forge_full_width_models`) with their LCM-LoRAs instead (``models`` stays the
    tiny set)."""
    models = tiny.cached()
    shipped = json.loads((REPO_ROOT / "lib_lcm" / "weights" / "registry.json").read_text())
    registry_path = tmp_path_factory.mktemp("registry") / "weights_registry.json"
    if webui_installation.is_forge:
        checkpoint, lora = forge_models()
        style = forge_style_lora(checkpoint, tmp_path_factory.mktemp("forge-style-lora"))
        checkpoints, variants = [checkpoint], {"sd15": lora}
        loras = {f"LCM-LoRA/{lora.name}": lora, tiny.STYLE_LORA_FILE: style}
        family_checkpoints = {"sd15": checkpoint}
        for family, (family_checkpoint, family_lora) in forge_full_width_models(os.environ[FORGE_MODELS_ENV]).items():
            family_checkpoints[family] = family_checkpoint
            if family == "sd15-inpainting":  # on the session servers, as A1111's tiny one
                checkpoints.append(family_checkpoint)
            if family_lora is not None:
                variants[FAMILY_VARIANTS[family]] = family_lora
                loras[f"LCM-LoRA/{family_lora.name}"] = family_lora
    else:
        checkpoints = [models.sd15, models.sd15_inpainting]
        loras = {f"LCM-LoRA/{name}": models.lora_dir / name for name in TINY_LCM_LORAS.values()}
        loras[tiny.STYLE_LORA_FILE] = models.style_lora
        variants = {v: models.lora_dir / name for v, name in TINY_LCM_LORAS.items()}
        family_checkpoints = {"sd15": models.sd15, "sd15-inpainting": models.sd15_inpainting,
                              "sdxl": models.sdxl, "ssd1b": models.ssd1b}
    registry_path.write_text(json.dumps(tiny_registry(shipped, variants), indent=2))
    return {
        "models": models,
        "checkpoints": checkpoints,
        "loras": loras,
        "registry": registry_path,
        "sd15_checkpoint": checkpoints[0],
        "sd15_lcm_lora": variants["sd15"],
        "family_checkpoints": family_checkpoints,
    }


# The Forges' model lists: their loaders refuse a checkpoint that no entry there matches (A1111 has none).
FORGE_MODEL_LISTS = (
    "repositories/huggingface_guess/huggingface_guess/model_list.py",  # Forge 2
    "modules_forge/packages/huggingface_guess/model_list.py",  # Forge Neo
    "ldm_patched/modules/supported_models.py",  # reForge, Forge Classic
)
NO_SSD1B = ("host limitation: this WebUI's model list has no SSD-1B entry, so its loader refuses the checkpoint "
            "before any extension code runs (docs/compatibility.md, note 16; shown by test_lcm_models.py::"
            "test_a_host_without_ssd1b_in_its_model_list_refuses_it)")


def host_loads_ssd1b(installation: Installation) -> bool:
    """False on the Forges whose model list has no SSD-1B entry (Forge Classic, Forge Neo)."""
    return _model_lists_have_ssd1b(installation.webui_dir)


@functools.cache
def _model_lists_have_ssd1b(webui_dir: Path) -> bool:  # read once per checkout, not per test
    lists = [webui_dir / path for path in FORGE_MODEL_LISTS if (webui_dir / path).is_file()]
    return not lists or any("class SSD1B" in path.read_text(encoding="utf-8") for path in lists)


def family_checkpoint(models: dict, family: str, installation: Installation) -> Path:
    """The checkpoint of model `family` this host loads (`tiny_webui_models`' ``family_checkpoints``), or a
    one-line skip saying how to get it, or that the host cannot load it."""
    if family == "ssd1b" and not host_loads_ssd1b(installation):
        pytest.skip(NO_SSD1B)
    checkpoint = models["family_checkpoints"].get(family)
    if checkpoint is None:
        where = (f"build it with `python -m tests.fixtures.full_width --out ${FORGE_MODELS_ENV} --family {family}`"
                 if installation.is_forge else "the tiny fixtures have none")
        pytest.skip(f"no {family} checkpoint for this host: {where}")
    return checkpoint


def hires_upscaler(client: WebUIClient) -> str:
    """The hires-fix upscaler of the tests: "Latent" where the host upscales latents; Forge Neo has no latent
    upscale mode (its `shared.latent_upscale_modes` stays empty and "Latent" is refused), so "None" there, the
    plain resize every host lists."""
    modes = {mode["name"] for mode in client.get("/sdapi/v1/latent-upscale-modes")}
    return "Latent" if "Latent" in modes else "None"


def sdxl_size_args(installation: Installation) -> tuple[str, ...]:
    """Flags of a Forge server holding an SDXL-size model: the UNet stored bf16 (the hosts' own ``--unet-in-bf16``,
    Neo's ``--bf16-unet``; on CPU they compute in fp32). The Forges merge a LoRA into a copy of each weight it
    adapts: in fp32 an SDXL UNet and its merged LCM-LoRA alone would take ~20 GB; bf16 peaked at 14.3 GB RSS. (fp8
    storage takes less, but its per-layer cast made an SD 1.5 step ~4x slower on CPU, too slow for the browser
    suite.)"""
    return (installation.first_defined(*FORGE_BF16_UNET_FLAGS),) if installation.is_forge else ()


@pytest.fixture(scope="session")
def webui_args() -> Sequence[str]:
    """Extra ``launch.py`` arguments for the session servers."""
    return ()


@pytest.fixture(scope="session")
def webui_env(tiny_webui_models) -> Mapping[str, str]:
    """Extra environment for the session servers."""
    return {"LCM_LORA_REGISTRY": str(tiny_webui_models["registry"])}


@pytest.fixture(scope="session")
def webui_extensions() -> Mapping[str, Path]:
    """Extensions linked into each data dir: this repository and the test-only UNet probe."""
    extensions = {EXTENSION_NAME: REPO_ROOT}
    if PROBE_EXTENSION.is_dir():
        extensions["lcm-test-probe"] = PROBE_EXTENSION
    return extensions


class WebUIFactory:
    """``factory(ui=False, args=(), env=None, extensions=None, checkpoints=None, loras=None, **server) -> WebUIServer``:
    prepare and start a server with a fresh data dir (``server``: more :class:`WebUIServer` fields, e.g. ``api``,
    ``api_auth``); every server started is stopped at the end of the session.

    ``exclusive`` (on Forge): one server at a time. Forge holds an SD 1.5-size model (~9 GB of memory per
    server on CPU), so starting a server first stops the others, and ``activate(server)`` (the ``webui`` and
    ``webui_ui`` fixtures call it for every test) restarts a stopped one on its port. ``make_room()`` stops them
    all, for a test that starts a server of its own."""

    def __init__(self, tmp_path_factory, installation: Installation, models: dict, env: Mapping[str, str],
                 exclusive: bool):
        self.tmp_path_factory = tmp_path_factory
        self.installation = installation
        self.models = models
        self.env = env
        self.exclusive = exclusive
        self.servers: list[WebUIServer] = []

    def __call__(
        self,
        ui: bool = False,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        extensions: Mapping[str, Path] | None = None,
        checkpoints: Sequence[Path] | None = None,
        loras: Mapping[str, Path] | None = None,
        **server_fields,
    ) -> WebUIServer:
        root = self.tmp_path_factory.mktemp("webui-data")
        data_dir = DataDir.create(
            root / "data",
            checkpoints or self.models["checkpoints"],
            self.models["loras"] if loras is None else loras,
            extensions={EXTENSION_NAME: REPO_ROOT} if extensions is None else extensions,
        )
        server = self.adopt(WebUIServer(self.installation, data_dir, ui=ui, extra_args=tuple(args),
                                        extra_env={**self.env, **(env or {})}, **server_fields))
        server.prepare()
        server.start()
        return server

    def adopt(self, server: WebUIServer) -> WebUIServer:
        """Count `server` (about to start) among this factory's: made room for, stopped at the end."""
        self.make_room()
        self.servers.append(server)
        return server

    def make_room(self) -> None:
        if self.exclusive:
            self.stop_all()

    def activate(self, server: WebUIServer) -> WebUIServer:
        if self.exclusive and not server.running:
            self.make_room()
            server.start(port=server.port)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def webui_factory(tmp_path_factory, webui_installation, tiny_webui_models, webui_env) -> Iterator[WebUIFactory]:
    """A :class:`WebUIFactory`; on Forge it keeps one server running at a time."""
    factory = WebUIFactory(tmp_path_factory, webui_installation, tiny_webui_models, webui_env,
                           exclusive=webui_installation.is_forge)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def webui_server(webui_factory, webui_args, webui_extensions) -> WebUIServer:
    """The session's API-only server (``--nowebui --api``)."""
    return webui_factory(args=webui_args, extensions=webui_extensions)


@pytest.fixture
def webui(webui_server, webui_factory) -> WebUIClient:
    """Client of the session's API-only server (running: on Forge restarted if another server replaced it);
    ``webui_server`` has its log and timings."""
    return webui_factory.activate(webui_server).client()


@pytest.fixture(scope="session")
def webui_ui_server(webui_factory, webui_args, webui_extensions) -> WebUIServer:
    """The session's server with the gradio UI (and ``--api``), for browser tests."""
    return webui_factory(ui=True, args=webui_args, extensions=webui_extensions)


@pytest.fixture
def webui_ui(webui_ui_server, webui_factory) -> WebUIClient:
    return webui_factory.activate(webui_ui_server).client()

