"""Side-by-side speed of LCM-LoRA in a real WebUI: wall time per image and counted UNet evaluations.

One server (API only) with this extension, a model set (bench/harness.py: "tiny" or "slim") and the test-only
UNet probe; the configurations run interleaved (A, B, C, D, A, B, ...) and the table shows medians, so drift
hits every configuration alike. Every configuration carries the same LoRA at the same weight: otherwise each
switch would restore and re-apply the LoRA weights, and that cost, not the sampler, would dominate.

    python bench/webui_speed.py --model slim --sizes 64 256 512 --repeats 3
    python bench/webui_speed.py --model slim --sizes 256 --lcm-steps 2 4 6 8 --euler-steps 4 8 20 --repeats 1

Prints a table and, last, one JSON line with the figures (bench/plot_steps.py draws a steps sweep from it).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from harness import PROMPT, STEM, emit, generate, machine, start

TAGGED = f"{PROMPT} <lora:{STEM}:1>"
# name -> (payload without steps, whether it is an LCM configuration)
CONFIGS = {
    "ours_cfg1": ({"sampler_name": "Euler a", "alwayson_scripts": {
        "LCM-LoRA": {"args": [{"enabled": True, "cfg_scale": 1.0}]}}}, True),
    "ours_cfg1.5": ({"sampler_name": "Euler a", "alwayson_scripts": {
        "LCM-LoRA": {"args": [{"enabled": True, "cfg_scale": 1.5}]}}}, True),
    "builtin_lcm_cfg1": ({"sampler_name": "LCM", "cfg_scale": 1.0, "prompt": TAGGED}, True),
    "builtin_lcm_cfg1.5": ({"sampler_name": "LCM", "cfg_scale": 1.5, "prompt": TAGGED}, True),
    "euler_a_cfg7": ({"sampler_name": "Euler a", "cfg_scale": 7.0, "prompt": TAGGED}, False),
}


def with_steps(name: str, steps: int) -> dict:
    config, _ = CONFIGS[name]
    config = json.loads(json.dumps(config))
    if "alwayson_scripts" in config:  # the panel sets the request's steps itself
        config["alwayson_scripts"]["LCM-LoRA"]["args"][0]["steps"] = steps
    else:
        config["steps"] = steps
    return config


def ratios(medians: dict, sizes, lcm_steps: int, euler_steps: int) -> dict:
    def m(name, size, steps):
        return medians.get(f"{name}@{size}px/{steps}")

    out = {}
    for size in sizes:
        pairs = {
            f"ours_cfg1/builtin_lcm_cfg1@{size}": (m("ours_cfg1", size, lcm_steps), m("builtin_lcm_cfg1", size, lcm_steps)),
            f"ours_cfg1.5/builtin_lcm_cfg1.5@{size}": (m("ours_cfg1.5", size, lcm_steps),
                                                       m("builtin_lcm_cfg1.5", size, lcm_steps)),
            f"euler_a_{euler_steps}_cfg7/ours_cfg1@{size}": (m("euler_a_cfg7", size, euler_steps),
                                                            m("ours_cfg1", size, lcm_steps)),
        }
        out.update({key: a / b for key, (a, b) in pairs.items() if a and b})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "slim"), default="tiny")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lcm-steps", type=int, nargs="+", default=[4], help="steps of the LCM configurations")
    parser.add_argument("--euler-steps", type=int, nargs="+", default=[20], help="steps of Euler a CFG 7")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--json-out", type=Path, help="also write the JSON line to this file")
    args = parser.parse_args()

    runs = [(name, steps) for name in args.configs
            for steps in (args.lcm_steps if CONFIGS[name][1] else args.euler_steps)]
    times = {(name, size, steps): [] for name, steps in runs for size in args.sizes}
    unet = {}
    with tempfile.TemporaryDirectory(prefix="lcm-bench-") as tmp:
        bench = start(Path(tmp), args.model)
        try:
            for name in args.configs:  # warm-up: LoRA application, first-call allocations
                generate(bench, with_steps(name, 2), args.sizes[0])
            for _ in range(args.repeats):
                for size in args.sizes:
                    for name, steps in runs:
                        elapsed, probe = generate(bench, with_steps(name, steps), size)
                        times[(name, size, steps)].append(elapsed)
                        unet[f"{name}/{steps}"] = {"calls": probe["calls"], "rows": probe["rows"]}
        finally:
            bench.server.stop()

    medians = {f"{name}@{size}px/{steps}": statistics.median(v) for (name, size, steps), v in times.items()}
    header = f"{'configuration':<26}" + "".join(f"{size:>9}px" for size in args.sizes) + "   UNet calls / rows"
    print(f"model: {args.model}, median of {args.repeats}, seconds per image")
    print(header)
    for name, steps in runs:
        cells = "".join(f"{medians[f'{name}@{size}px/{steps}']:>10.2f}s" for size in args.sizes)
        counts = unet[f"{name}/{steps}"]
        print(f"{f'{name} {steps} steps':<26}{cells}   {counts['calls']} / {counts['rows']}")
    figures = ratios(medians, args.sizes, args.lcm_steps[0] if 4 not in args.lcm_steps else 4,
                     args.euler_steps[-1])
    for key, value in figures.items():
        print(f"{key:<44} {value:.3f}")
    result = {"bench": "webui_speed", "model": args.model, "repeats": args.repeats, "machine": machine(),
              "median_seconds": medians, "unet": unet, "ratios": figures}
    emit(result, args.json_out)


if __name__ == "__main__":
    main()
