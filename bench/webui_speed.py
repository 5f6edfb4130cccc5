"""Side-by-side speed of LCM-LoRA in a real WebUI: wall time per image and counted UNet evaluations.

Needs a prepared WebUI (SD_WEBUI_DIR, SD_WEBUI_PYTHON; see tests/e2e). Starts one server (API only) with this
extension, the tiny fixture models (or --checkpoint) and the test-only UNet probe, then runs the configurations
interleaved (A, B, C, D, A, B, ...) and reports medians, so drift hits every configuration alike.

    python bench/webui_speed.py --sizes 64 256 --repeats 5

Prints a table and, last, one JSON line with the figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import PROBE_EXTENSION, TINY_LCM_LORAS, tiny_registry  # noqa: E402
from tests.e2e.webui import EXTENSION_NAME, DataDir, Installation, WebUIServer  # noqa: E402
from tests.fixtures import tiny  # noqa: E402

STEM = "lcm-lora-sdv1-5"
PROMPT = "a photo of a cat"
CONFIGS = {
    "ours_cfg1": {"sampler_name": "Euler a", "alwayson_scripts": {
        "LCM-LoRA": {"args": [{"enabled": True, "steps": 4, "cfg_scale": 1.0}]}}},
    "ours_cfg1.5": {"sampler_name": "Euler a", "alwayson_scripts": {
        "LCM-LoRA": {"args": [{"enabled": True, "steps": 4, "cfg_scale": 1.5}]}}},
    "builtin_lcm_cfg1": {"sampler_name": "LCM", "steps": 4, "cfg_scale": 1.0, "prompt": f"{PROMPT} <lora:{STEM}:1>"},
    "builtin_lcm_cfg1.5": {"sampler_name": "LCM", "steps": 4, "cfg_scale": 1.5, "prompt": f"{PROMPT} <lora:{STEM}:1>"},
    "euler_a_20_cfg7": {"sampler_name": "Euler a", "steps": 20, "cfg_scale": 7.0, "prompt": f"{PROMPT} <lora:{STEM}:1>"},
}
# Every configuration carries the same LoRA: otherwise each switch between configurations re-applies or
# restores the LoRA weights (the host's Lora cache), and that cost, not the sampler, would dominate.


def start_server(work: Path, checkpoint: Path | None) -> WebUIServer:
    installation = Installation.from_env()
    if installation is None:
        sys.exit("set SD_WEBUI_DIR (a prepared WebUI checkout) and SD_WEBUI_PYTHON")
    models = tiny.cached()
    loras = {f"LCM-LoRA/{name}": models.lora_dir / name for name in TINY_LCM_LORAS.values()}
    shipped = json.loads((ROOT / "lib_lcm" / "weights_registry.json").read_text())
    registry = work / "registry.json"
    registry.write_text(json.dumps(tiny_registry(shipped, {v: models.lora_dir / n for v, n in TINY_LCM_LORAS.items()})))
    data_dir = DataDir.create(work / "data", [checkpoint or models.sd15], loras,
                              extensions={EXTENSION_NAME: ROOT, "lcm-test-probe": PROBE_EXTENSION})
    server = WebUIServer(installation, data_dir, extra_env={"LCM_LORA_REGISTRY": str(registry)})
    server.prepare()
    server.start()
    return server


def run(client, config: dict, size: int) -> tuple[float, dict]:
    payload = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 1, "width": size, "height": size,
               "override_settings": {"live_previews_enable": False}, **config}
    client.post("/lcm-test/v1/unet/reset")
    started = time.perf_counter()
    client.post("/sdapi/v1/txt2img", payload)
    elapsed = time.perf_counter() - started
    return elapsed, client.get("/lcm-test/v1/unet")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path, help="an SD1.5-shaped checkpoint (+ yaml) instead of the tiny one")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lcm-bench-") as tmp:
        server = start_server(Path(tmp), args.checkpoint)
        try:
            client = server.client()
            for name in args.configs:  # warm-up: model load, LoRA application, first-call allocations
                run(client, CONFIGS[name], args.sizes[0])
            times = {(name, size): [] for name in args.configs for size in args.sizes}
            unet = {}
            for _ in range(args.repeats):
                for size in args.sizes:
                    for name in args.configs:
                        elapsed, probe = run(client, CONFIGS[name], size)
                        times[(name, size)].append(elapsed)
                        unet[name] = {"calls": probe["calls"], "rows": probe["rows"]}
        finally:
            server.stop()

    medians = {f"{name}@{size}": statistics.median(values) for (name, size), values in times.items()}
    print(f"{'configuration':<22}" + "".join(f"{size:>10}px" for size in args.sizes) + "   UNet calls / rows")
    for name in args.configs:
        cells = "".join(f"{medians[f'{name}@{size}']:>11.3f}s" for size in args.sizes)
        print(f"{name:<22}{cells}   {unet[name]['calls']} / {unet[name]['rows']}")
    ratios = {}
    for size in args.sizes:
        if "ours_cfg1" in args.configs and "builtin_lcm_cfg1" in args.configs:
            ratios[f"ours_cfg1/builtin_lcm_cfg1@{size}"] = medians[f"ours_cfg1@{size}"] / medians[f"builtin_lcm_cfg1@{size}"]
        if "ours_cfg1.5" in args.configs and "builtin_lcm_cfg1.5" in args.configs:
            ratios[f"ours_cfg1.5/builtin_lcm_cfg1.5@{size}"] = (
                medians[f"ours_cfg1.5@{size}"] / medians[f"builtin_lcm_cfg1.5@{size}"])
        if "ours_cfg1" in args.configs and "euler_a_20_cfg7" in args.configs:
            ratios[f"euler_a_20_cfg7/ours_cfg1@{size}"] = medians[f"euler_a_20_cfg7@{size}"] / medians[f"ours_cfg1@{size}"]
    for key, value in ratios.items():
        print(f"{key:<40} {value:.3f}")
    print(json.dumps({"median_seconds": medians, "unet": unet, "ratios": ratios, "repeats": args.repeats,
                      "checkpoint": str(args.checkpoint or "tiny-sd15")}))


if __name__ == "__main__":
    main()
