"""Memory and first-use costs of LCM-LoRA in a real WebUI, side by side with the host's built-in LCM.

One API-only server (bench/harness.py; default the "slim" SD1.5-width model). Launch.py runs the WebUI in its
own process, so the server's pid is the WebUI's: its peak RSS (VmHWM) is read from /proc and reset between
series by writing 5 to /proc/<pid>/clear_refs.

1. LoRA cost: resident memory after a generation without any LoRA, then after one with the LCM-LoRA: the
   host keeps a CPU copy of every weight the LoRA changes (A1111's network_weights_backup / _bias_backup)
   plus the loaded LoRA. Printed beside what that backup is for the real SD1.5 and SDXL UNets, computed
   from their layouts (tests/fixtures/layouts.py) with the LCM-LoRA's module set.
2. Peak RSS over a series of generations: this extension (panel on, CFG 1) vs the built-in "LCM" sampler with
   the same LoRA typed in the prompt, interleaved series, each series' peak.
3. First use: the time a LoRA weight change adds (the host restores and re-applies the weights), and the
   time from switching the panel on to the first image when the weights must be verified first (the
   verification record is removed: the file is hashed once, then only stat-ed).

    python bench/webui_memory.py [--model slim] [--size 256] [--series 3] [--repeats 3]

Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from harness import PROMPT, ROOT, STEM, emit, generate, machine, start

sys.path.insert(0, str(ROOT))
from tests.fixtures import layouts, slim  # noqa: E402

MB = 1024 * 1024
NO_LORA = {"sampler_name": "Euler a", "steps": 4, "cfg_scale": 1.0, "prompt": PROMPT}
BUILTIN = {"sampler_name": "LCM", "steps": 4, "cfg_scale": 1.0, "prompt": f"{PROMPT} <lora:{STEM}:1>"}


def ours(weight: float = 1.0) -> dict:
    return {"sampler_name": "Euler a", "alwayson_scripts": {
        "LCM-LoRA": {"args": [{"enabled": True, "steps": 4, "cfg_scale": 1.0, "weight": weight}]}}}


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def backup_elements(unet: layouts.UNetConfig) -> int:
    """Weights and biases of the UNet modules the LCM-LoRA adapts: what the host copies before applying it."""
    shapes = layouts.unet_shapes(unet)
    adapted = layouts.lora_module_shapes(shapes)
    prefix = "model.diffusion_model."
    total = 0
    for key, shape in shapes.items():
        if not (key.startswith(prefix) and key.endswith(".weight") and len(shape) >= 2):
            continue
        ldm = key[len(prefix):-len(".weight")]
        diffusers = layouts.ldm_to_diffusers_module(ldm)
        if diffusers is None or "lora_unet_" + diffusers.replace(".", "_") not in adapted:
            continue
        total += _numel(shape) + _numel(shapes.get(f"{prefix}{ldm}.bias", (0,)))
    return total


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def computed_backups() -> dict:
    models = {"sd15": layouts.SD15_UNET, "sdxl": layouts.SDXL_UNET, "slim": slim.SLIM_SD15_UNET}
    return {name: {"elements": backup_elements(unet), "fp16_mb": backup_elements(unet) * 2 / MB,
                   "fp32_mb": backup_elements(unet) * 4 / MB} for name, unet in models.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "slim"), default="slim")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--series", type=int, default=3, help="generations per peak-RSS series")
    parser.add_argument("--repeats", type=int, default=3, help="series per configuration; first-use samples")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    size = args.size

    with tempfile.TemporaryDirectory(prefix="lcm-bench-mem-") as tmp:
        bench = start(Path(tmp), args.model)
        pid = bench.pid
        try:
            generate(bench, NO_LORA, size)
            rss_without = proc_status(pid)["VmRSS"]
            generate(bench, BUILTIN, size)
            rss_with = proc_status(pid)["VmRSS"]

            peaks = {"ours": [], "builtin_lcm_typed_lora": []}
            for _ in range(args.repeats):
                for name, config in (("ours", ours()), ("builtin_lcm_typed_lora", BUILTIN)):
                    generate(bench, config, size)  # the series measures steady state, not the switch
                    reset_peak(pid)
                    for _ in range(args.series):
                        generate(bench, config, size)
                    peaks[name].append(proc_status(pid)["VmHWM"])

            changed, steady = [], []
            for i in range(args.repeats):
                weight = 0.8 if i % 2 == 0 else 1.0
                changed.append(generate(bench, ours(weight), size)[0])
                steady.append(generate(bench, ours(weight), size)[0])

            record = bench.lora_folder / ".state" / f"{STEM}.record.json"
            verify_first, verify_steady = [], []
            for _ in range(args.repeats):
                steady_time = generate(bench, ours(1.0), size)[0]
                if not record.is_file():
                    sys.exit(f"no verification record at {record}: the extension's layout changed?")
                record.unlink()
                verify_first.append(generate(bench, ours(1.0), size)[0])
                verify_steady.append(steady_time)
                if not record.is_file():
                    sys.exit("the first generation did not re-verify the weights (no new record)")
        finally:
            bench.server.stop()

    peak = {name: statistics.median(v) for name, v in peaks.items()}
    result = {
        "bench": "webui_memory", "model": args.model, "size": size, "machine": machine(),
        "rss_mb": {"after_generation_without_lora": rss_without / MB, "after_lcm_lora_applied": rss_with / MB,
                   "lora_cost": (rss_with - rss_without) / MB},
        "backup_computed": computed_backups(),
        "peak_rss_mb": {name: value / MB for name, value in peak.items()},
        "peak_rss_ratio_ours_over_builtin": peak["ours"] / peak["builtin_lcm_typed_lora"],
        "first_use_seconds": {
            "lora_weight_change": statistics.median(changed) - statistics.median(steady),
            "enable_to_image_with_verification": statistics.median(verify_first),
            "verification_added": statistics.median(verify_first) - statistics.median(verify_steady),
            "steady_image": statistics.median(steady + verify_steady),
        },
    }
    rss = result["rss_mb"]
    print(f"model {args.model}, {size}x{size}, torch threads {result['machine']['torch_threads']}")
    print(f"RSS after a generation without LoRA   {rss['after_generation_without_lora']:9.0f} MB")
    print(f"RSS after the LCM-LoRA is applied     {rss['after_lcm_lora_applied']:9.0f} MB"
          f"   (+{rss['lora_cost']:.0f} MB)")
    for name, figures in result["backup_computed"].items():
        print(f"computed weight backup, {name:<5} UNet    {figures['fp16_mb']:9.0f} MB fp16 / {figures['fp32_mb']:.0f} MB fp32")
    for name, value in result["peak_rss_mb"].items():
        print(f"peak RSS over {args.series} images, {name:<24} {value:9.0f} MB")
    print(f"peak RSS ours / built-in               {result['peak_rss_ratio_ours_over_builtin']:9.3f}")
    for name, value in result["first_use_seconds"].items():
        print(f"{name:<38} {value:9.2f} s")
    emit(result, args.json_out)


if __name__ == "__main__":
    main()
