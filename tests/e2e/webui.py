"""Start a real AUTOMATIC1111 WebUI for the end-to-end tests and talk to it over HTTP.

Stdlib + Pillow only (the test process runs the project's python, the WebUI runs its own venv).
The server is a separate process group on 127.0.0.1, so stopping it also stops anything it spawned.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_NAME = "sd-webui-lcm-lora"

# Flags for a CPU-only, offline start; the checkpoint and the port are added per server.
BASE_ARGS = (
    "--skip-torch-cuda-test",
    "--use-cpu", "all",
    "--no-half",
    "--precision", "full",
    "--do-not-download-clip",
    "--no-download-sd-model",
    "--server-name", "127.0.0.1",
)
# Flags of BASE_ARGS that a host may have removed, passed only where the checkout defines them (FLAG_FILES); a
# host's argparse refuses the others (Forge Classic: --precision, --do-not-download-clip; Forge Neo: all of these);
# flag -> number of values that follow it.
OPTIONAL_ARGS = {"--use-cpu": 1, "--no-half": 0, "--precision": 1, "--do-not-download-clip": 0,
                 "--no-download-sd-model": 0}
# Where a checkout defines its command-line flags: A1111's parser, Forge 2's and Neo's backend, the `ldm_patched`
# Forges' backend.
FLAG_FILES = ("modules/cmd_args.py", "backend/args.py", "ldm_patched/modules/args_parser.py")

# The Forges ignore --use-cpu for their backend: without their own CPU flag their memory manager asks torch for a
# CUDA device at import and a CPU-only torch stops the start. Forge, reForge, Forge Classic: --always-cpu; Forge
# Neo renamed it --cpu.
FORGE_CPU_FLAGS = ("--always-cpu", "--cpu")
# The Forges' flag storing the UNet in bf16 (Forge Neo: --bf16-unet).
FORGE_BF16_UNET_FLAGS = ("--unet-in-bf16", "--bf16-unet")
# The flags above that keep a server on the CPU (flag -> number of values that follow it): a server with
# device="cuda" leaves them out, and the host picks its GPU and precision itself.
CPU_ONLY_ARGS = {"--skip-torch-cuda-test": 0, "--use-cpu": 1, "--no-half": 0, "--precision": 1, "--always-cpu": 0,
                 "--cpu": 0}

STARTUP_LINE = "Startup time:"  # webui.py prints it once every route and middleware is in place

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "COMMANDLINE_ARGS": "",
}


class WebUIError(RuntimeError):
    """The WebUI could not be prepared/started, or answered an HTTP error."""


def without_cpu_flags(args: Sequence[str]) -> list[str]:
    """`args` less CPU_ONLY_ARGS and their values."""
    out, i = [], 0
    while i < len(args):
        if args[i] in CPU_ONLY_ARGS:
            i += 1 + CPU_ONLY_ARGS[args[i]]
        else:
            out.append(args[i])
            i += 1
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Installation:
    """A prepared WebUI checkout and the python of its venv."""

    webui_dir: Path
    python: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Installation | None:
        """``SD_WEBUI_DIR`` (required) and ``SD_WEBUI_PYTHON`` (default ``$SD_WEBUI_DIR/venv/bin/python``)."""
        webui_dir = environ.get("SD_WEBUI_DIR")
        if not webui_dir:
            return None
        python = environ.get("SD_WEBUI_PYTHON") or str(Path(webui_dir) / "venv" / "bin" / "python")
        installation = cls(Path(webui_dir).resolve(), Path(python))
        if not (installation.webui_dir / "launch.py").is_file():
            raise WebUIError(f"SD_WEBUI_DIR={webui_dir} has no launch.py: not a WebUI checkout")
        if not installation.python.is_file():
            raise WebUIError(f"WebUI python {python} does not exist (set SD_WEBUI_PYTHON)")
        return installation

    @property
    def is_forge(self) -> bool:
        """Stable Diffusion WebUI Forge has its own ``modules_forge`` package."""
        return (self.webui_dir / "modules_forge").is_dir()

    @property
    def forge_args(self) -> tuple[str, ...]:
        """The Forges' CPU flag (FORGE_CPU_FLAGS: the first this checkout defines); () on A1111."""
        return (self.first_defined(*FORGE_CPU_FLAGS),) if self.is_forge else ()

    @property
    def host_args(self) -> tuple[str, ...]:
        """Flags this host needs beyond BASE_ARGS. Forge: its CPU flag, and its checkout as a gradio allowed path:
        its gradio 4 serves `file=` paths only from there (default: the data dir alone), so with a --data-dir
        elsewhere the page's own script.js and javascript/*.js get 403 and no page script runs."""
        return (*self.forge_args, "--gradio-allowed-path", str(self.webui_dir)) if self.is_forge else ()

    def _flag_sources(self) -> str | None:
        """The text of the checkout's FLAG_FILES, None where it has none of them."""
        texts = []
        for name in FLAG_FILES:
            try:
                texts.append((self.webui_dir / name).read_text(encoding="utf-8"))
            except OSError:
                pass
        return "\n".join(texts) if texts else None

    def defines(self, flag: str) -> bool:
        """Whether the checkout defines command-line `flag` (True where its flag files cannot be read)."""
        sources = self._flag_sources()
        return sources is None or f'"{flag}"' in sources

    def first_defined(self, *flags: str) -> str:
        """The first of `flags` the checkout defines (the first of all where it defines none)."""
        return next((flag for flag in flags if self.defines(flag)), flags[0])

    @property
    def takes_ckpt(self) -> bool:
        """A1111 and the older Forges load `--ckpt FILE` at start; Forge Neo has no such flag (its parser would take
        `--ckpt` as an abbreviation of `--ckpt-dirs`) and loads the `sd_model_checkpoint` option instead."""
        return self.defines("--ckpt")

    def config_stamp(self) -> dict[str, str]:
        """The version stamp the host writes into a new config.json and checks at every start: Forge Neo's
        `VERSION_UID` (modules/launch_utils.py), without which its launch.py stops at a "clean reinstall" prompt
        waiting for Enter. {} for the other hosts."""
        try:
            source = (self.webui_dir / "modules" / "launch_utils.py").read_text(encoding="utf-8")
        except OSError:
            return {}
        match = re.search(r'^VERSION_UID\b[^=\n]*=\s*"([^"]+)"', source, re.M)
        return {"VERSION_UID": match[1]} if match else {}

    @property
    def base_args(self) -> tuple[str, ...]:
        """BASE_ARGS without the OPTIONAL_ARGS this checkout does not define."""
        args, i = [], 0
        while i < len(BASE_ARGS):
            flag, n = BASE_ARGS[i], 1 + OPTIONAL_ARGS.get(BASE_ARGS[i], 0)
            if flag not in OPTIONAL_ARGS or self.defines(flag):
                args.extend(BASE_ARGS[i:i + n])
            i += n
        return tuple(args)

    def cuda_available(self) -> bool:
        """Whether the WebUI's torch sees a CUDA device."""
        check = [str(self.python), "-c", "import torch; print(torch.cuda.is_available())"]
        try:
            return subprocess.run(check, capture_output=True, text=True, timeout=300).stdout.strip() == "True"
        except (OSError, subprocess.SubprocessError):
            return False

    def version(self) -> tuple[int, int, int] | None:
        """The release the WebUI reports (``git describe --tags`` of the checkout, as its own footer does),
        as ``(major, minor, patch)``; None for a checkout without a release tag."""
        try:
            described = subprocess.run(
                ["git", "-C", str(self.webui_dir), "describe", "--tags"], capture_output=True, text=True, timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r"(\d+)\.(\d+)\.(\d+)", described)
        return (int(match[1]), int(match[2]), int(match[3])) if match else None


@dataclass
class DataDir:
    """A WebUI ``--data-dir``: extensions, models, config and outputs of one server.

    Args:
        root: the folder (created).
        checkpoint: the checkpoint to load with ``--ckpt`` (already inside ``root``).
    """

    root: Path
    checkpoint: Path

    @classmethod
    def create(
        cls,
        root: Path,
        checkpoints: Sequence[Path],
        loras: Mapping[str, Path],
        extensions: Mapping[str, Path] | None = None,
    ) -> DataDir:
        """Lay out ``root`` with symlinks: checkpoints (+ a yaml beside each, if any) in
        ``models/Stable-diffusion``, LoRAs at ``models/Lora/<relative name>``, and ``extensions``
        (folder name -> path; default: this repository as ``sd-webui-lcm-lora``) in ``extensions/``.
        The first checkpoint is the one loaded at start."""
        if extensions is None:
            extensions = {EXTENSION_NAME: REPO_ROOT}
        if not checkpoints:
            raise WebUIError("a WebUI data dir needs at least one checkpoint")
        ckpt_dir = root / "models" / "Stable-diffusion"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        linked = []
        for ckpt in checkpoints:
            target = ckpt_dir / ckpt.name
            target.symlink_to(ckpt.resolve())
            yaml = ckpt.with_suffix(".yaml")
            if yaml.is_file():
                (ckpt_dir / yaml.name).symlink_to(yaml.resolve())
            linked.append(target)
        for relative, lora in loras.items():
            target = root / "models" / "Lora" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(lora.resolve())
        extensions_dir = root / "extensions"
        extensions_dir.mkdir(exist_ok=True)
        for name, path in extensions.items():
            (extensions_dir / name).symlink_to(Path(path).resolve(), target_is_directory=True)
        return cls(root, linked[0])


@dataclass
class Txt2ImgResult:
    """One generation: the decoded images, their infotexts and the raw ``info`` dict."""

    images: list
    infotexts: list[str]
    info: dict
    parameters: dict

    @property
    def image(self):
        return self.images[0]

    @property
    def infotext(self) -> str:
        return self.infotexts[0]


_DEFAULT_AUTH = object()


class WebUIClient:
    """JSON over HTTP to one WebUI server; ``auth`` = (user, password) sends HTTP Basic credentials."""

    def __init__(self, base_url: str, timeout: float = 600.0, auth: tuple[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.auth = auth

    def request(self, method: str, path: str, payload: Any = None, timeout: float | None = None,
                auth: Any = _DEFAULT_AUTH) -> tuple[int, Any]:
        """Send one request; returns ``(status, decoded JSON or text)`` without raising on HTTP errors.
        ``auth``: credentials for this request only (None: none), default the client's."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        auth = self.auth if auth is _DEFAULT_AUTH else auth
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        text = body.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def _ok(self, method: str, path: str, payload: Any = None) -> Any:
        status, body = self.request(method, path, payload)
        if status != 200:
            raise WebUIError(f"{method} {path} -> HTTP {status}: {str(body)[:2000]}")
        return body

    def get(self, path: str) -> Any:
        return self._ok("GET", path)

    def post(self, path: str, payload: Any = None) -> Any:
        return self._ok("POST", path, {} if payload is None else payload)

    def _generate(self, path: str, payload: dict) -> Txt2ImgResult:
        from PIL import Image

        body = self.post(path, payload)
        info = json.loads(body["info"]) if isinstance(body.get("info"), str) else body.get("info") or {}
        images = [Image.open(io.BytesIO(base64.b64decode(b64))) for b64 in body.get("images") or []]
        for image in images:
            image.load()
        return Txt2ImgResult(images, list(info.get("infotexts") or []), info, body.get("parameters") or {})

    def txt2img(self, **payload: Any) -> Txt2ImgResult:
        """``POST /sdapi/v1/txt2img``; keyword arguments are the API payload."""
        return self._generate("/sdapi/v1/txt2img", payload)

    def img2img(self, init_image, **payload: Any) -> Txt2ImgResult:
        """``POST /sdapi/v1/img2img`` with a PIL image as the single init image."""
        buffer = io.BytesIO()
        init_image.save(buffer, format="PNG")
        payload["init_images"] = [base64.b64encode(buffer.getvalue()).decode()]
        return self._generate("/sdapi/v1/img2img", payload)


@dataclass
class WebUIServer:
    """One WebUI process (``launch.py``) with its data dir, port and log file.

    Args:
        installation: the WebUI checkout and python.
        data_dir: the ``--data-dir`` (see :class:`DataDir`).
        ui: start the gradio UI too (``--api``) instead of ``--nowebui``.
        api: with ``ui``, serve the API too (``--api``); False: the UI alone (API-only starts always serve it).
        api_auth: (user, password) for ``--api-auth``; the server's client sends them.
        extra_args: more ``launch.py`` arguments.
        extra_env: more environment variables (``PIP_CONSTRAINT``/``REQS_FILE`` come from the caller's env).
        device: "cpu" (the tests' default: CPU flags, full precision) or "cuda" (the host's own choice).
    """

    installation: Installation
    data_dir: DataDir
    ui: bool = False
    api: bool = True
    api_auth: tuple[str, str] | None = None
    extra_args: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    device: str = "cpu"
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    start_seconds: float | None = None
    prepare_seconds: float | None = None
    prepare_log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> WebUIClient:
        return WebUIClient(self.base_url, auth=self.api_auth)

    def _args(self, *more: str) -> list[str]:
        mode = (("--api",) if self.api else ()) if self.ui else ("--nowebui", "--api")
        if self.api_auth:
            mode += ("--api-auth", ":".join(self.api_auth))
        checkpoint = ("--ckpt", str(self.data_dir.checkpoint)) if self.installation.takes_ckpt else ()
        host = [*self.installation.base_args, *self.installation.host_args]
        return [
            str(self.installation.python), "launch.py", *(without_cpu_flags(host) if self.device == "cuda" else host),
            *mode, "--data-dir", str(self.data_dir.root), *checkpoint, *self.extra_args, *more,
        ]

    def _prepare_config(self) -> None:
        """The data dir's config.json before a (re)start. Where the host has no `--ckpt` it selects the checkpoint,
        at every start as `--ckpt` would (a checkpoint chosen over the API meanwhile is not what a restart loads).
        A config the harness writes or a test put there carries the host's version stamp, where it has one
        (`Installation.config_stamp`)."""
        config_path = self.data_dir.root / "config.json"
        if self.installation.takes_ckpt and not config_path.is_file():
            return
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        config = {**self.installation.config_stamp(), **config}
        if not self.installation.takes_ckpt:
            config["sd_model_checkpoint"] = self.data_dir.checkpoint.name
        config_path.write_text(json.dumps(config, indent=4), encoding="utf-8")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # On a shared few-core machine torch's default of one thread per core makes the OpenMP workers
        # wait on each other: 64x64 images took 5-50x longer than with one thread. Set it to override.
        env.setdefault("OMP_NUM_THREADS", "1")
        env.update(OFFLINE_ENV)
        env.update(self.extra_env)
        # The test process' virtualenv must not leak into the WebUI's python.
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        return env

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.is_file() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def outputs_dir(self) -> Path:
        """The folder the running server saves images under (its txt2img folder's parent): the data dir's
        `outputs` from 1.7 on, `outputs` in the WebUI checkout on 1.6 (a relative path, read from the cwd)."""
        txt2img = Path(self.client().get("/sdapi/v1/options")["outdir_txt2img_samples"])
        return (txt2img if txt2img.is_absolute() else self.installation.webui_dir / txt2img).parent

    def prepare(self, timeout: float = 600.0) -> None:
        """Run the WebUI's environment preparation once (``launch.py --exit``): requirement checks and
        every extension's ``install.py``. Later starts use ``--skip-prepare-environment``."""
        log = self.data_dir.root.parent / f"{self.data_dir.root.name}-prepare.log"
        self.prepare_log_path = log
        self._prepare_config()
        started = time.monotonic()
        with open(log, "wb") as out:
            result = subprocess.run(
                self._args("--exit"), cwd=self.installation.webui_dir, env=self._env(),
                stdout=out, stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True,
            )
        self.prepare_seconds = time.monotonic() - started
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
            raise WebUIError(f"WebUI prepare (launch.py --exit) failed with exit code {result.returncode}:\n{tail}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 180.0, port: int | None = None) -> WebUIClient:
        """Start the server on ``port`` (default: a free one) and wait until ``/sdapi/v1/sd-models`` answers.
        A restart on the same port appends to the same log."""
        self.port = port or free_port()
        self.log_path = self.data_dir.root.parent / f"{self.data_dir.root.name}-{self.port}.log"
        self._prepare_config()
        started = time.monotonic()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self._args("--port", str(self.port), "--skip-prepare-environment"),
                cwd=self.installation.webui_dir, env=self._env(),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        client = self.client()
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise WebUIError(
                    f"WebUI exited with code {self.process.returncode} during start-up:\n{self.log_tail()}"
                )
            # In UI mode gradio listens before the WebUI adds its middleware; a request in between
            # makes starlette freeze the app and the start dies. "Startup time:" is printed after that.
            if STARTUP_LINE in self.log_text():
                try:
                    ready = "/sdapi/v1/sd-models" if self.api or not self.ui else "/"
                    status, _ = client.request("GET", ready, timeout=5)
                    if status == 200:
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise WebUIError(f"WebUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        self.start_seconds = time.monotonic() - started
        return client

    def stop(self, grace: float = 15.0) -> None:
        """Interrupt the process group (the WebUI exits on SIGINT), then kill what is left."""
        if self.process is None:
            return
        pgid = self.process.pid
        if self.process.poll() is None:
            try:
                os.killpg(pgid, signal.SIGINT)
                self.process.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
