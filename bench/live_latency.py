"""LCM-LoRA Live, measured in a real browser: edit-to-image latency, what one image's time is made of, and Live
against clicking Generate while typing.

One WebUI with its page (this extension, the UNet/timing probe, a TAESD decoder stand-in), headless Chromium
driven by tests/e2e/browser/live.mjs. Per repeat, interleaved, two kinds of edit, "word" (one more word typed into
the prompt at 8 characters a second) and "seed" (a new seed typed into the seed box), are each turned into an image
three ways:
- click: Live off, the edit, then a click on Generate (the host's usual path: saved to outputs/);
- live_taesd: Live on with Fast decode (the image follows the keystroke; not saved, TAESD decode);
- live_full: Live on, Fast decode off (the full VAE).
Latency runs from the last keystroke's input event (click: from the click) to the new image of that prompt loaded
and painted in the gallery. The probe splits the server's part by the script hooks around each stage (prompts = text
encoding, sampling = the UNet steps, decode, finish = post-processing and saving); "page" is the rest of the
latency: request, queue, response, image transfer and paint.

Then, side by side: 40 characters typed at 8 per second with Live on, repeated, each run right after Generate
clicked back to back three times (Live off): how many images Live made against the images clicks could make in
the typing's time, and how long the final prompt's image took after the last key against one click; the time from
a live result to the next live request; and the same img2img after different earlier generations (panel and live
requests, over the API): how far apart.

    python bench/live_latency.py                      # CPU: tiny model, 64x64; GPU: slim (SD 1.5-size), 512x512
    python bench/live_latency.py --model tiny --sizes 64 256 --repeats 5
    python bench/live_latency.py --device cpu --model slim --sizes 64 --repeats 3

The device is the GPU where the WebUI's torch sees one (--device auto), else the CPU; every image is 4 steps (the
panel's default). Prints a table and, last, one JSON line with the figures (bench/plot_live.py draws them).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from harness import ROOT, emit, gpu_name, machine, resolve_device, start

BROWSER = ROOT / "tests" / "e2e" / "browser"
MODES = ("click", "live_taesd", "live_full")
STAGES = ("prompts", "sampling", "decode", "finish", "total")


def run_live_mjs(bench, out: Path, scenarios, **options) -> dict:
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 90, 200)).save(out / "init.png")
    config = {"url": bench.server.base_url, "out": str(out), "chromium": shutil.which("chromium") or "/usr/bin/chromium",
              "initImage": str(out / "init.png"), "outputs": str(bench.server.data_dir.root / "outputs"),
              "scenarios": list(scenarios), **options}
    run = subprocess.run(["node", str(BROWSER / "live.mjs"), json.dumps(config)], cwd=BROWSER, capture_output=True,
                         text=True, timeout=3600)
    report = out / "report.json"
    if not report.is_file():
        raise SystemExit(f"live.mjs wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    result = json.loads(report.read_text())
    for name, scenario in result.items():
        if scenario.get("error"):
            raise SystemExit(f"scenario {name} failed:\n{scenario['error']}\n{bench.server.log_tail(30)}")
    return result


def summarise(rows) -> dict:
    """{edit: {mode: {"latency": median ms, stage: median ms, "page": median (latency - server total)}}}."""
    return {edit: summarise_edit([row for row in rows if row["edit"] == edit])
            for edit in sorted({row["edit"] for row in rows}, reverse=True)}


def summarise_edit(rows) -> dict:
    out = {}
    for mode in MODES:
        mine = [row for row in rows if row["mode"] == mode and row["server"]]
        if not mine:
            continue
        figures = {"latency": statistics.median(row["ms"] for row in mine), "n": len(mine)}
        for stage in STAGES:
            values = [row["server"][stage] * 1000 for row in mine if stage in row["server"]]
            if values:
                figures[stage] = statistics.median(values)
        figures["page"] = statistics.median(row["ms"] - row["server"]["total"] * 1000 for row in mine)
        figures["bare"] = figures.get("sampling", 0) + figures.get("decode", 0)
        out[mode] = figures
    return out


def typing_vs_clicks(size_rows: dict, typing_runs: list) -> dict:
    """The targets' figures: Live while typing against clicks in the same time, the final image after the last
    key against one click, one edit against one click, and the time from a live result to the next request.
    Each typing run is compared with the clicks made right before it (their median click -> image painted): the
    machine's load changes within a bench; the figures are the medians over the runs."""
    for run in typing_runs:
        run["images"] = run["generations"] - run.get("cuts", 0)  # an image cut short as stale is not shown
        run["click_ms"] = statistics.median(run["clickMs"])
        run["clicks_possible"] = run["typingMs"] / run["click_ms"]
    gaps = [gap for run in typing_runs for gap in run["gapsMs"]]

    def median(key):
        return statistics.median(run[key] for run in typing_runs)

    out = {
        "typing_ms": median("typingMs"),
        "live_images": median("images"),
        "cuts": sum(run.get("cuts", 0) for run in typing_runs),
        "started_while_typing": median("startedWhileTyping"),
        "click_ms": median("click_ms"),
        "clicks_possible": median("clicks_possible"),
        "images_ratio": statistics.median(run["images"] / run["clicks_possible"] for run in typing_runs),
        "final_image_ms": median("finalImageMs"),
        "final_minus_click_ms": statistics.median(run["finalImageMs"] - run["click_ms"] for run in typing_runs),
        "final_minus_click_runs_ms": [run["finalImageMs"] - run["click_ms"] for run in typing_runs],
        "gap_ms_median": statistics.median(gaps) if gaps else None,
        "gap_ms_max": max(gaps) if gaps else None,
        "live_duration_ms": median("lastDurationMs"),
        "live_server_ms": statistics.median(ms for run in typing_runs for ms in run["serverMs"]),
    }
    for edit, modes in size_rows.items():
        if {"click", "live_taesd"} <= set(modes):
            out[f"{edit}_live_over_click"] = modes["live_taesd"]["latency"] / modes["click"]["latency"]
    return out


def img2img_apart(bench) -> dict:
    """The same img2img (LCM-LoRA panel, then a live request) after two different earlier generations: the
    largest pixel difference between the two images (0: identical)."""
    import numpy as np
    from PIL import Image

    init = Image.new("RGB", (64, 64), (120, 90, 200))
    base = {"prompt": "a cat", "width": 64, "height": 64, "seed": 1234, "denoising_strength": 0.6,
            "override_settings": {"live_previews_enable": False}}
    earlier = ({"seed": 5, "steps": 3, "sampler_name": "Euler a"}, {"seed": 77, "steps": 6, "sampler_name": "Euler a",
                                                                     "batch_size": 2})
    apart = {}
    for name, fields in (("panel", {"enabled": True}), ("live", {"live": True})):
        images = []
        for before in earlier:
            bench.client.txt2img(prompt="a dog", width=64, height=64, **before)
            result = bench.client.img2img(init, **base, alwayson_scripts={"LCM-LoRA": {"args": [fields]}})
            images.append(np.asarray(result.image.convert("RGB"), dtype=np.int16))
        apart[name] = int(np.abs(images[0] - images[1]).max())
    return apart


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--model", choices=("tiny", "slim"), help="default: tiny on the CPU, slim on a GPU")
    parser.add_argument("--sizes", type=int, nargs="+", help="default: 64 on the CPU, 512 on a GPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--typing-repeats", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    model = args.model or ("slim" if device == "cuda" else "tiny")
    sizes = args.sizes or ([512] if device == "cuda" else [64])

    work = Path(tempfile.mkdtemp(prefix="lcm-live-bench-"))
    bench = start(work, model, ui=True, device=device)
    results = {"machine": {**machine(), "device": device, "gpu": gpu_name() if device == "cuda" else None},
               "model": model, "sizes": {}}
    try:
        for size in sizes:
            out = work / f"out-{size}"
            out.mkdir()
            report = run_live_mjs(bench, out, ["latency", "typingRuns"],
                                  latency={"repeats": args.repeats, "size": size},
                                  typing={"repeats": args.typing_repeats, "size": size})
            results["sizes"][str(size)] = summarise(report["latency"]["rows"])
            if size == sizes[0]:
                runs = report["typingRuns"]["runs"]
                results["typing"] = {"keystrokes": runs[0]["keystrokes"], "generations": runs[0]["generations"],
                                     "runs": runs}
                results["targets"] = typing_vs_clicks(results["sizes"][str(size)], runs)
        results["img2img_apart"] = img2img_apart(bench)
    finally:
        bench.server.stop()
    print_table(results)
    emit(results, args.json_out)


def print_table(results):
    m = results["machine"]
    where = m["gpu"] or f"{m['cpu']} ({m['cores']} cores)"
    print(f"\nLive latency, {results['model']} model, WebUI {m['webui']}, {m['device']}: {where}, {m['date']}")
    print(f"{'size':>5} {'edit':<5} {'mode':<11} {'latency':>8} {'prompts':>8} {'sampling':>9} {'decode':>7} "
          f"{'finish':>7} {'page':>6}   (median ms)")
    for size, edits in results["sizes"].items():
        for edit, modes in edits.items():
            for mode, f in modes.items():
                print(f"{size:>5} {edit:<5} {mode:<11} {f['latency']:8.0f} {f.get('prompts', 0):8.0f} "
                      f"{f.get('sampling', 0):9.0f} {f.get('decode', 0):7.0f} {f.get('finish', 0):7.0f} {f['page']:6.0f}")
            if {"click", "live_taesd"} <= set(modes):
                live, click = modes["live_taesd"], modes["click"]
                print(f"{size:>5} {edit:<5} live_taesd / click = {live['latency'] / click['latency']:.2f}   "
                      f"live_taesd / its bare sampling+decode = {live['latency'] / live['bare']:.2f}")
    print_targets(results)


def print_targets(results):
    t = results["targets"]
    size = next(iter(results["sizes"]))
    runs = results["typing"]["runs"]
    print(f"\nTargets, {size}x{size}, measured side by side in this run (medians; typing: {len(runs)} runs, each "
          "against the clicks made right before it)")
    print(f"{'':<46} {'Live':>9} {'click':>9} {'Live vs click':>14}   target")
    for edit in ("seed", "word"):
        ratio = t.get(f"{edit}_live_over_click")
        if ratio is not None:
            modes = results["sizes"][size][edit]
            print(f"{'one edit (' + edit + ') -> image painted, ms':<46} {modes['live_taesd']['latency']:9.0f} "
                  f"{modes['click']['latency']:9.0f} {ratio:13.2f}x   <= 1.00x (seed)")
    print(f"{'typing 40 chars at 8/s (' + format(t['typing_ms'] / 1000, '.1f') + ' s): images':<46} "
          f"{t['live_images']:9.1f} {t['clicks_possible']:9.1f} {t['images_ratio']:13.2f}x   >= 0.70x")
    print(f"{'  of which started before the last key':<46} {t['started_while_typing']:9.1f}")
    print(f"{'  stale images cut short (all runs)':<46} {t['cuts']:9d}")
    print(f"{'last key -> final prompt image painted, ms':<46} {t['final_image_ms']:9.0f} {t['click_ms']:9.0f} "
          f"{t['final_minus_click_ms']:+12.0f}ms   <= +300 ms")
    print(f"{'  per run, final - click, ms':<46} "
          + ", ".join(format(ms, "+.0f") for ms in t["final_minus_click_runs_ms"]))
    if t["gap_ms_median"] is not None:
        print(f"{'a live result -> the next live request, ms':<46} {t['gap_ms_median']:9.1f} {'':>9} "
              f"{'max ' + format(t['gap_ms_max'], '.1f'):>14}   <= 50 ms")
    print(f"{'a live image while typing, request -> painted':<46} {t['live_duration_ms']:9.0f}   (the server's part: "
          f"{t['live_server_ms']:.0f} ms)")
    apart = results["img2img_apart"]
    print(f"{'img2img after different generations, /255':<46} "
          + "  ".join(f"{name} {value}" for name, value in apart.items()) + "   identical (0)")


if __name__ == "__main__":
    main()
