"""Per few-step family, side by side in one run of a real WebUI: UNet rows per image and the speed-up over Euler a
at 20 steps (CFG 7) on the same checkpoint with the same LoRA in the prompt.

Each family runs its own recipe through the panel's API (`"family"`); its baseline is the host's Euler a with the
family's file tagged, so both carry the same LoRA and no request pays for re-applying LoRA weights. The pair runs
interleaved (family, Euler a, family, ...) after a warm-up of each, and the table shows medians. The family files
are stand-ins shaped for the checkpoint (random weights: the bench measures sampling, not images). SD 1.5 families
run on the model set's SD 1.5; SDXL-Lightning and DMD2 on the tiny SDXL (model "tiny" only).

    python bench/family_speed.py --model slim --size 256 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness import PROMPT, emit, generate, machine, start

from lib_lcm.safetensors_header import read_shapes
from lib_lcm.weights.registry import load_registry
from tests.fixtures import layouts, slim, tiny

# (family, the file it uses at its default step count, architecture)
FAMILIES = [
    ("lcm", "sd15", "sd1"),
    ("tcd", "tcd-sd15", "sd1"),
    ("hyper", "hyper-sd15-4step", "sd1"),
    ("hyper-cfg", "hyper-sd15-8step-cfg", "sd1"),
    ("lightning", "lightning-sdxl-4step", "sdxl"),
    ("dmd2", "dmd2-sdxl-4step", "sdxl"),
]
EULER_STEPS, EULER_CFG = 20, 7.0


def stand_in(variant: str, checkpoint: Path, folder: Path) -> Path:
    """A LoRA in the released files' layout (LCM-LoRA's modules) shaped for `checkpoint`'s UNet."""
    shapes = {key: shape for key, shape in read_shapes(checkpoint).items() if key.startswith("model.diffusion_model.")}
    path = folder / f"{variant}.safetensors"
    tiny.save_safetensors(tiny.lora_state_dict(f"bench-{variant}", layouts.lora_module_shapes(shapes), 4, 4.0), path)
    return path


def configs(family: str, stem: str, checkpoint: str) -> dict:
    model = {"override_settings": {"live_previews_enable": False, "sd_model_checkpoint": checkpoint}}
    return {
        family: {**model, "alwayson_scripts": {"LCM-LoRA": {"args": [{"enabled": True, "family": family}]}}},
        f"euler_a_{EULER_STEPS}[{family}]": {**model, "sampler_name": "Euler a", "steps": EULER_STEPS,
                                             "cfg_scale": EULER_CFG, "prompt": f"{PROMPT} <lora:{stem}:1>"},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "slim"), default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", type=Path, help="also write the JSON line to this file")
    args = parser.parse_args()

    models = tiny.cached()
    sd15 = models.sd15 if args.model == "tiny" else slim.cached().checkpoint
    checkpoints = {"sd1": sd15, **({"sdxl": models.sdxl} if args.model == "tiny" else {})}
    registry = load_registry(Path(__file__).resolve().parents[1] / "lib_lcm" / "weights" / "registry.json")
    chosen = [(family, variant, arch) for family, variant, arch in FAMILIES if arch in checkpoints]
    rows, times = {}, {}
    with tempfile.TemporaryDirectory(prefix="lcm-family-bench-") as tmp:
        extra = {variant: stand_in(variant, checkpoints[arch], Path(tmp)) for _, variant, arch in chosen
                 if variant != "sd15"}
        bench = start(Path(tmp), args.model, extra_variants=extra,
                      checkpoints=[path for arch, path in checkpoints.items() if arch != "sd1"])
        try:
            for family, variant, arch in chosen:
                pair = configs(family, registry[variant].stem, checkpoints[arch].stem)
                for config in pair.values():  # warm-up: checkpoint switch, LoRA application
                    generate(bench, config, args.size)
                for _ in range(args.repeats):
                    for name, config in pair.items():
                        elapsed, probe = generate(bench, config, args.size)
                        times.setdefault(name, []).append(elapsed)
                        rows[name] = probe["rows"]
        finally:
            bench.server.stop()

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"model: {args.model}, {args.size}px, median of {args.repeats}, one image per request")
    print(f"{'family':<12}{'UNet rows/image':>16}{'s/image':>10}{'Euler a 20 rows':>17}{'s/image':>10}{'speed-up':>10}")
    speedups = {}
    for family, _, _ in chosen:
        euler = f"euler_a_{EULER_STEPS}[{family}]"
        speedups[family] = medians[euler] / medians[family]
        print(f"{family:<12}{rows[family]:>16}{medians[family]:>10.3f}{rows[euler]:>17}{medians[euler]:>10.3f}"
              f"{speedups[family]:>9.2f}x")
    emit({"bench": "family_speed", "model": args.model, "size": args.size, "repeats": args.repeats,
          "machine": machine(), "median_seconds": medians, "unet_rows": rows, "speedup_over_euler_a_20": speedups},
         args.json_out)


if __name__ == "__main__":
    main()
