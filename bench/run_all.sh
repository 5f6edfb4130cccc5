#!/usr/bin/env bash
# Every figure of docs/speed.md, in one go, against a prepared WebUI:
#   SD_WEBUI_DIR=... SD_WEBUI_PYTHON=... bench/run_all.sh [OUT_DIR]
# Each step writes its table (.txt) and JSON line (.json) to OUT_DIR (default bench/results/<date>), then the
# steps plot is drawn to OUT_DIR/steps.png and docs/speed.md's tables to OUT_DIR/summary.md (bench/report.py).
# About 70 minutes on 2 CPU cores: the tiny model's 512x512 Euler a images and the slim model's UNet take most
# of it (the slim model skips 512x512: ~20 s per UNet call, 1 thread).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/$(date +%F)}
mkdir -p "$out"
# PIP_CONSTRAINT (if exported for the WebUI's venv) must not pin this python's numpy/torch
env -u PIP_CONSTRAINT python3 -m pip install -q -r bench/requirements.txt

step() {  # name, command...
    local name=$1; shift
    echo "== $name: $*"
    "$@" | tee "$out/$name.txt"
    tail -n 1 "$out/$name.txt" > "$out/$name.json"
}

step speed-tiny python3 bench/webui_speed.py --model tiny --sizes 64 256 512 --repeats 5
step speed-slim python3 bench/webui_speed.py --model slim --sizes 64 256 --repeats 3
step steps-slim python3 bench/webui_speed.py --model slim --sizes 256 --repeats 1 \
    --configs ours_cfg1 ours_cfg1.5 builtin_lcm_cfg1 euler_a_cfg7 --lcm-steps 2 4 6 8 --euler-steps 4 8 20
step memory-slim python3 bench/webui_memory.py --model slim --size 256 --series 2 --repeats 2
step install-noop python3 bench/install_noop.py
# the headline ratio again, with more repeats of just the two configurations it compares
step ratio-slim python3 bench/webui_speed.py --model slim --sizes 256 --configs ours_cfg1 builtin_lcm_cfg1 --repeats 7
python3 bench/plot_steps.py "$out/steps-slim.json" --out "$out/steps.png"
# docs/speed.md's tables, from the JSON lines above
python3 bench/report.py "$out" --out "$out/summary.md"
