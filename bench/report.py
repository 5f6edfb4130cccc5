"""docs/speed.md's Speed and Memory tables, from the JSON lines bench/run_all.sh leaves in a results folder.

    python3 bench/report.py bench/results/<date> [--out bench/results/<date>/summary.md]

Reads speed-slim.json, speed-tiny.json, ratio-slim.json, steps-slim.json, memory-slim.json and install-noop.json
(each one JSON line; a missing file leaves its table out) and prints Markdown: so every figure docs/speed.md quotes
is the output of one command, never copied by hand.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

LABELS = {
    "ours_cfg1": "LCM-LoRA sampler (this extension), CFG 1",
    "ours_cfg1.5": "LCM-LoRA sampler (this extension), CFG 1.5",
    "builtin_lcm_cfg1": "host's \"LCM\" + LoRA typed in the prompt, CFG 1",
    "builtin_lcm_cfg1.5": "host's \"LCM\" + LoRA typed in the prompt, CFG 1.5",
    "euler_a_cfg7": "Euler a, CFG 7",
}
# ratio key (as webui_speed.py names it, without "@size") -> (what it says, target)
RATIOS = {
    "ours_cfg1/builtin_lcm_cfg1": ("ours @ CFG 1 / host's LCM @ CFG 1 (time per image)", "≤ 0.6 at 256² (slim)"),
    "euler_a_20_cfg7/ours_cfg1": ("Euler a 20 steps @ CFG 7 / ours @ CFG 1 (speed-up)", "≥ 8×"),
    "ours_cfg1.5/builtin_lcm_cfg1.5": ("ours / host's LCM, both CFG 1.5 (extension overhead)", "≤ 1.02"),
}


def load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    lines = path.read_text().strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def _medians(result: dict) -> list[tuple[str, int, int, float]]:
    """(configuration, size, steps, seconds) of each median, in the bench's order (keys "name@SIZEpx/STEPS")."""
    out = []
    for key, seconds in result["median_seconds"].items():
        name, size, steps = re.fullmatch(r"(.+)@(\d+)px/(\d+)", key).groups()
        out.append((name, int(size), int(steps), seconds))
    return out


def _runs(result: dict) -> tuple[list[tuple[str, int]], list[int]]:
    """(configuration, steps) in the bench's order, and the image sizes."""
    runs, sizes = [], []
    for name, size, steps, _ in _medians(result):
        if (name, steps) not in runs:
            runs.append((name, steps))
        if size not in sizes:
            sizes.append(size)
    return runs, sizes


def speed_table(result: dict) -> str:
    runs, sizes = _runs(result)
    lines = ["| configuration | steps | " + " | ".join(f"{s}²" for s in sizes) + " | UNet calls / batch rows per image |",
             "|---|---|" + "---|" * len(sizes) + "---|"]
    for name, steps in runs:
        cells = " | ".join(_seconds(result["median_seconds"].get(f"{name}@{s}px/{steps}")) for s in sizes)
        counts = result["unet"].get(f"{name}/{steps}", {})
        lines.append(f"| {LABELS.get(name, name)} | {steps} | {cells} | {counts.get('calls', '?')} / "
                     f"{counts.get('rows', '?')} |")
    return "\n".join(lines)


def ratio_table(results: list[dict]) -> str:
    """One row per ratio, one column per (model, size, repeats) among the results given."""
    columns: dict[str, dict[str, float]] = {}
    for result in results:
        for key, value in result["ratios"].items():
            base, size = key.rsplit("@", 1)
            columns.setdefault(f"{result['model']} {size}², n={result['repeats']}", {})[base] = value
    lines = ["| ratio | " + " | ".join(columns) + " | target |", "|---|" + "---|" * len(columns) + "---|"]
    for base, (label, target) in RATIOS.items():
        cells = [_ratio(values.get(base), speedup=base.startswith("euler")) for values in columns.values()]
        if any(cell != "—" for cell in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(lines)


def per_step_table(result: dict) -> str:
    """Per-step and fixed cost of each configuration of a steps sweep, and what one UNet row costs there."""
    by_config: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for name, size, steps, seconds in _medians(result):
        by_config.setdefault((name, size), []).append((steps, seconds))
    lines = ["| configuration | size | seconds per step | seconds per image besides the steps | "
             "UNet rows per step |", "|---|---|---|---|---|"]
    for (name, size), points in by_config.items():
        if len(points) < 2:
            continue
        steps_, seconds = zip(*sorted(points), strict=True)
        slope, fixed = statistics.linear_regression(steps_, seconds)  # least squares
        steps = steps_[-1]
        rows = result["unet"].get(f"{name}/{steps}", {}).get("rows")
        per_step_rows = f"{rows / steps:g}" if rows else "?"
        lines.append(f"| {LABELS.get(name, name)} | {size}² | {slope:.2f} s | {fixed:.2f} s | {per_step_rows} |")
    return "\n".join(lines)


def memory_table(result: dict) -> str:
    rss, peak, first = result["rss_mb"], result["peak_rss_mb"], result["first_use_seconds"]
    backup = result["backup_computed"]
    rows = [
        ("WebUI RSS after an image without LoRA", f"{rss['after_generation_without_lora']:.0f} MB"),
        ("… after the LCM-LoRA is applied (weight backup + LoRA)", f"{rss['after_lcm_lora_applied']:.0f} MB "
                                                                   f"(+{rss['lora_cost']:.0f} MB)"),
        ("computed weight backup, SD1.5 UNet (fp16 / fp32)", f"{backup['sd15']['fp16_mb']:.0f} / "
                                                             f"{backup['sd15']['fp32_mb']:.0f} MB"),
        ("computed weight backup, SDXL UNet (fp16 / fp32)", f"{backup['sdxl']['fp16_mb']:.0f} / "
                                                            f"{backup['sdxl']['fp32_mb']:.0f} MB"),
        ("peak RSS over a series, this extension (CFG 1)", f"{peak['ours']:.0f} MB"),
        ("peak RSS over a series, host's LCM + typed LoRA", f"{peak['builtin_lcm_typed_lora']:.0f} MB"),
        ("peak RSS ours / host's (target ≤ 1.05)", f"{result['peak_rss_ratio_ours_over_builtin']:.3f}"),
        ("first use: a LoRA weight change adds", _seconds(first["lora_weight_change"])),
        ("first use: switch on → image, weights verified first", _seconds(first["enable_to_image_with_verification"])
         + f" (verification adds {_seconds(first['verification_added'])})"),
        ("steady image, same settings", _seconds(first["steady_image"])),
    ]
    return "\n".join(["| memory / first use | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def install_table(result: dict) -> str:
    rows = [
        ("bare `python -c pass`", result["python_startup_s"]),
        ("install.py no-op, default policy (checkpoint labels cached)", result["auto_s"]),
        (f"install.py no-op, {result['checkpoints']} checkpoint headers re-read", result["auto_uncached_s"]),
        ("install.py no-op, every variant installed", result["all_s"]),
    ]
    lines = [f"| start-up cost (median of {result['runs']} runs) | ms |", "|---|---|"]
    lines += [f"| {k} | {v * 1000:.0f} |" for k, v in rows]
    lines.append(f"| sha256 (first launch after a manual download): SD1.5 / SDXL LoRA | "
                 f"{result['sha256_sd15_s'] * 1000:.0f} / {result['sha256_sdxl_s'] * 1000:.0f} |")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _ratio(value: float | None, speedup: bool) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}×" if speedup else f"{value:.2f}"


def _machine_line(result: dict) -> str:
    m = result["machine"]
    return (f"A1111 {m['webui']}, {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch thread(s), "
            f"{m['date']}")


def render(folder: Path) -> str:
    parts = []
    speeds = [r for r in (load(folder, "speed-slim"), load(folder, "speed-tiny")) if r]
    for result in speeds:
        parts.append(f"**{result['model']}** model, median of {result['repeats']} ({_machine_line(result)}):\n\n"
                     + speed_table(result))
    ratio = load(folder, "ratio-slim")
    if ratio:
        parts.append(f"Headline ratio again, **{ratio['model']}** model, only the two configurations it compares, "
                     f"median of {ratio['repeats']}:\n\n" + speed_table(ratio))
    if speeds or ratio:
        parts.append("Ratios:\n\n" + ratio_table(speeds + ([ratio] if ratio else [])))
    steps = load(folder, "steps-slim")
    if steps:
        parts.append(f"Steps sweep, **{steps['model']}** model (one image per point; least-squares line through "
                     "the points of each configuration):\n\n" + per_step_table(steps))
    memory = load(folder, "memory-slim")
    if memory:
        parts.append(f"Memory and first use, **{memory['model']}** model, {memory['size']}² "
                     f"({_machine_line(memory)}):\n\n" + memory_table(memory))
    install = load(folder, "install-noop")
    if install:
        parts.append(f"Start-up (Python {install['python']}):\n\n" + install_table(install))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    text = render(args.folder)
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
