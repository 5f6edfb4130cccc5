#!/usr/bin/env bash
# Every figure of README's Speed section, in one go, against a prepared WebUI:
#   SD_WEBUI_DIR=... SD_WEBUI_PYTHON=... bench/run_all.sh [OUT_DIR]
# Each step writes its table (.txt) and JSON line (.json) to OUT_DIR (default bench/results/<date>), then the
# steps plot is drawn to OUT_DIR/steps.png. About 75 minutes on 2 CPU cores: the tiny model's 512x512 Euler a
# images and the slim model's UNet take most of it (the slim model skips 512x512: ~20 s per UNet call, 1 thread).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/$(date +%F)}
mkdir -p "$out"
python3 -m pip install -q -r bench/requirements.txt

step() {  # name, command...
    local name=$1; shift
    echo "== $name: $*"
    "$@" | tee "$out/$name.txt"
    tail -n 1 "$out/$name.txt" > "$out/$name.json"
}

step install-noop python3 bench/install_noop.py
step speed-tiny python3 bench/webui_speed.py --model tiny --sizes 64 256 512 --repeats 5
step speed-slim python3 bench/webui_speed.py --model slim --sizes 64 256 --repeats 3
step steps-slim python3 bench/webui_speed.py --model slim --sizes 256 --repeats 1 \
    --configs ours_cfg1 ours_cfg1.5 builtin_lcm_cfg1 euler_a_cfg7 --lcm-steps 2 4 6 8 --euler-steps 4 8 20
step memory-slim python3 bench/webui_memory.py --model slim --size 256
python3 bench/plot_steps.py "$out/steps-slim.json" --out "$out/steps.png"
