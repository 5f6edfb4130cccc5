"""Edit-to-image latency per image, click vs Live vs the bare sampling + decode, from live_latency.py JSON lines
(one per model), as stacked bars: the server's stages and the page's part.

    python bench/plot_live.py TINY.json SLIM.json --out bench/results/<date>/live.png

Needs matplotlib (bench/requirements.txt).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

MODES = {"click": "click", "live_taesd": "Live TAESD", "live_full": "Live full VAE"}
# Stacked parts of one bar: the server's stages (probe timings), then everything else the user waits for.
PARTS = (("prompts", "text encoding"), ("sampling", "UNet steps"), ("decode", "VAE decode"),
         ("finish", "post-processing, saving"), ("page", "request, queue, page; a running image waited for"))


def bars(results):
    """[(label, {part: ms})] for every model, size and mode in `results`."""
    out = []
    for result in results:
        for size, edits in result["sizes"].items():
            for edit, modes in edits.items():
                for mode, label in MODES.items():
                    figures = modes.get(mode)
                    if figures:
                        out.append((f"{result['model']} {size}², {edit}\n{label}",
                                    {key: figures.get(key, 0.0) for key, _ in PARTS}))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("live.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(path.read_text().strip().splitlines()[-1]) for path in args.results]
    rows = bars(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4.5))
    bottoms = [0.0] * len(rows)
    for key, label in PARTS:
        values = [figures[key] / 1000 for _, figures in rows]
        ax.bar(range(len(rows)), values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    ax.set_ylabel("seconds from the edit to the image on screen (median)")
    machine = results[0]["machine"]
    ax.set_title(f"LCM-LoRA Live vs click, WebUI {machine['webui']}, {machine['cpu']} ({machine['cores']} cores), "
                 f"{machine['date']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
