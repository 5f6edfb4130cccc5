"""LCM-LoRA Live, measured in a real browser: edit-to-image latency and what one image's time is made of.

One WebUI with its page (this extension, the UNet/timing probe, a TAESD decoder stand-in), headless Chromium
driven by tests/e2e/browser/live.mjs. Per repeat, interleaved, two kinds of edit, "word" (one more word typed into
the prompt at 8 characters a second) and "seed" (a new seed typed into the seed box), are each turned into an image
three ways:
- click: Live off, the edit, then a click on Generate (the host's usual path: saved to outputs/);
- live_taesd: Live on with Fast decode (the image follows the keystroke; not saved, TAESD decode);
- live_full: Live on, Fast decode off (the full VAE).
Latency runs from the last keystroke's input event (click: from the click) to the new image of that prompt loaded
and painted in the gallery. The probe splits the server's part by the script hooks around each stage (prompts = text encoding,
sampling = the UNet steps, decode, finish = post-processing and saving); "page" is the rest of the latency:
request, queue, response, image transfer and paint. Then the typing run: 40 characters at 8 per second with Live
on, how many images were made.

    python bench/live_latency.py --model tiny --sizes 64 256 --repeats 5
    python bench/live_latency.py --model slim --sizes 64 --repeats 3

Prints a table and, last, one JSON line with the figures (bench/plot_live.py draws them).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from harness import ROOT, emit, machine, start

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "slim"), default="tiny")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lcm-live-bench-"))
    bench = start(work, args.model, ui=True)
    results = {"machine": machine(), "model": args.model, "sizes": {}}
    try:
        for size in args.sizes:
            out = work / f"out-{size}"
            out.mkdir()
            report = run_live_mjs(bench, out, ["latency"], latency={"repeats": args.repeats, "size": size})
            results["sizes"][str(size)] = summarise(report["latency"]["rows"])
        typing = run_live_mjs(bench, work, ["typing"])["typing"]
        results["typing"] = {"keystrokes": typing["keystrokes"], "generations": typing["generations"],
                             "final_prompt_matches": typing["last"].splitlines()[0].strip() == typing["promptBox"].strip()}
    finally:
        bench.server.stop()
    print_table(results)
    emit(results, args.json_out)


def print_table(results):
    m = results["machine"]
    print(f"\nLive latency, {results['model']} model, WebUI {m['webui']}, {m['cpu']} ({m['cores']} cores), {m['date']}")
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
    t = results["typing"]
    print(f"typing: {t['keystrokes']} keystrokes at 8/s -> {t['generations']} live images; "
          f"last image = last prompt: {t['final_prompt_matches']}")


if __name__ == "__main__":
    main()
