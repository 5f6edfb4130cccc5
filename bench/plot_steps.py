"""Time per image vs steps, one line per configuration, from a webui_speed.py steps sweep's JSON line.

    python bench/plot_steps.py SWEEP.json --out docs/bench-steps.png

Needs matplotlib (bench/requirements.txt).
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

LABELS = {
    "ours_cfg1": "LCM-LoRA (this extension), CFG 1",
    "ours_cfg1.5": "LCM-LoRA (this extension), CFG 1.5",
    "builtin_lcm_cfg1": "host's built-in LCM + LoRA, CFG 1",
    "builtin_lcm_cfg1.5": "host's built-in LCM + LoRA, CFG 1.5",
    "euler_a_cfg7": "Euler a, CFG 7",
}


def series(result: dict, size: int) -> dict[str, list[tuple[int, float]]]:
    lines = defaultdict(list)
    for key, seconds in result["median_seconds"].items():
        match = re.fullmatch(r"(.+)@(\d+)px/(\d+)", key)
        if match and int(match[2]) == size:
            lines[match[1]].append((int(match[3]), seconds))
    return {name: sorted(points) for name, points in lines.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--size", type=int, help="image size to draw (default: the first in the file)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench-steps.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(args.sweep.read_text().strip().splitlines()[-1])
    sizes = sorted({int(re.search(r"@(\d+)px", key)[1]) for key in result["median_seconds"]})
    size = args.size or sizes[0]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in series(result, size).items():
        steps, seconds = zip(*points, strict=True)
        ax.plot(steps, seconds, marker="o", label=LABELS.get(name, name),
                linestyle="--" if name.startswith("builtin") else "-")
    unet = result["unet"]
    machine = result["machine"]
    ax.set_xlabel("steps")
    ax.set_ylabel("seconds per image (median)")
    ax.set_title(f"A1111 {machine['webui']}, {result['model']} SD1.5-shaped model, {size}x{size}, "
                 f"{machine['cores']}-core CPU", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    rows = ", ".join(f"{k.replace('_', ' ')}: {v['rows']}" for k, v in unet.items() if k.endswith("/4"))
    fig.text(0.01, 0.01, f"UNet rows at 4 steps - {rows}", fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
