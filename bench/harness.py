"""What the WebUI benches share: one API-only server with this extension, a model set and the UNet probe.

Needs a prepared WebUI (SD_WEBUI_DIR, SD_WEBUI_PYTHON; see tests/e2e). Models:
- "tiny": the 32-channel test fixtures (tests/fixtures/tiny.py): glue-dominated, like nothing real;
- "slim": SD1.5's UNet widths with random weights (tests/fixtures/slim.py, built once into the fixture cache,
  ~1.8 GB): the UNet dominates the time of an image, as on real hardware.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import PROBE_EXTENSION, TINY_LCM_LORAS, tiny_registry  # noqa: E402
from tests.e2e.webui import EXTENSION_NAME, DataDir, Installation, WebUIClient, WebUIServer  # noqa: E402
from tests.fixtures import slim, taesd, tiny  # noqa: E402

STEM = "lcm-lora-sdv1-5"
PROMPT = "a photo of a cat"
NEGATIVE = "blurry"


@dataclass
class Bench:
    server: WebUIServer
    client: WebUIClient
    model: str
    lora_folder: Path  # the data dir's models/Lora/LCM-LoRA

    @property
    def pid(self) -> int:
        return self.server.process.pid


def _exit_on_sigterm(signum, frame):
    sys.exit(f"stopped by signal {signum}")  # unwinds, so the caller's `finally` stops the WebUI


def start(work: Path, model: str = "tiny", ui: bool = False, extra_variants=None, checkpoints=(),
          device: str = "cpu") -> Bench:
    """Start the bench's WebUI (API only, or with its page when `ui`; on the CPU, or on the GPU with the host's own
    precision when `device` is "cuda") with the host's TAESD decoder file in place (a random stand-in,
    tests/fixtures/taesd.py: the host cannot download the real one offline).

    `extra_variants` ({registry variant: file}) puts more catalogue files in place under their stems, registered
    with their own size and hash; `checkpoints` are loaded next to the model set's SD 1.5."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    installation = Installation.from_env()
    if installation is None:
        sys.exit("set SD_WEBUI_DIR (a prepared WebUI checkout, see tests/e2e) and SD_WEBUI_PYTHON")
    if model == "slim":
        models = slim.cached()
        checkpoint, sd15_lora = models.checkpoint, models.lcm_lora
    else:
        models = tiny.cached()
        checkpoint, sd15_lora = models.sd15, models.lcm_lora_sd15
    loras = {f"LCM-LoRA/{tiny.LCM_LORA_FILES['sd1']}": sd15_lora}
    if model == "tiny":
        loras[tiny.STYLE_LORA_FILE] = models.style_lora
    shipped = json.loads((ROOT / "lib_lcm" / "weights" / "registry.json").read_text())
    registry = work / "registry.json"
    variants = {"sd15": sd15_lora, **(extra_variants or {})}
    for variant, path in (extra_variants or {}).items():
        loras[f"LCM-LoRA/{shipped['variants'][variant]['stem']}.safetensors"] = path
    registry.write_text(json.dumps(tiny_registry(shipped, variants)))
    assert TINY_LCM_LORAS["sd15"] == tiny.LCM_LORA_FILES["sd1"]
    data_dir = DataDir.create(work / "data", [checkpoint, *checkpoints], loras,
                              extensions={EXTENSION_NAME: ROOT, "lcm-test-probe": PROBE_EXTENSION})
    taesd.write_decoder(data_dir.root / "models" / "VAE-taesd" / taesd.FILE_NAME)
    server = WebUIServer(installation, data_dir, ui=ui, extra_env={"LCM_LORA_REGISTRY": str(registry)},
                         device=device)
    server.prepare()
    client = server.start(timeout=600.0)
    return Bench(server, client, model, data_dir.root / "models" / "Lora" / "LCM-LoRA")


def payload(config: dict, size: int, **more) -> dict:
    return {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 1, "width": size, "height": size,
            "override_settings": {"live_previews_enable": False}, **config, **more}


def generate(bench: Bench, config: dict, size: int, **more) -> tuple[float, dict]:
    """Wall time of one txt2img request and the probe's UNet counts for it."""
    bench.client.post("/lcm-test/v1/unet/reset")
    started = time.perf_counter()
    bench.client.post("/sdapi/v1/txt2img", payload(config, size, **more))
    elapsed = time.perf_counter() - started
    return elapsed, bench.client.get("/lcm-test/v1/unet")


def resolve_device(device: str) -> str:
    """"auto": "cuda" where the WebUI's torch sees a GPU, else "cpu"."""
    if device != "auto":
        return device
    installation = Installation.from_env()
    return "cuda" if installation is not None and installation.cuda_available() else "cpu"


def gpu_name() -> str | None:
    """The first GPU's name (nvidia-smi), for the figures' record."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    installation = Installation.from_env()
    version = installation.version() if installation else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": os.environ.get("OMP_NUM_THREADS", "1"),
            "webui": ".".join(map(str, version)) if version else "?", "date": time.strftime("%Y-%m-%d")}


def emit(result: dict, json_out: Path | None) -> None:
    """The bench's last line: its figures as one JSON line (also written to json_out)."""
    line = json.dumps(result)
    if json_out:
        json_out.write_text(line + "\n")
    print(line)
