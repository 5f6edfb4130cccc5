"""install.py's no-op wall time and sha256 throughput.

    python3 bench/install_noop.py [--runs 9] [--checkpoints 20] [--hash-mb 256]

No-op: install.py run as A1111 1.10 runs it (subprocess, cwd = a dummy WebUI root, PYTHONPATH = that root)
when the wanted weights are present and their verification records match. Scenario "auto": the default
LCM_LORA_DOWNLOAD=auto with only the SD 1.5 LoRA installed, so the checkpoint folder is scanned (labels
cached by size+mtime) on every launch; scenario "all": LCM_LORA_DOWNLOAD=all, every file installed. The
bare interpreter start-up is printed for comparison. The weights are small stand-ins described by an
LCM_LORA_REGISTRY override: the no-op path never reads the file contents, only stats them.

sha256: lib_lcm.weights.verification.sha256_file over a file of --hash-mb MB in the page cache, i.e. what the first
launch after a manual download (or a changed file) costs; the LCM-LoRA files are 134.6 and 393.9 MB.

Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib_lcm.weights.lora_files import LoraFiles, make_folders, state_folder  # noqa: E402
from lib_lcm.weights.registry import default_registry_path, load_registry  # noqa: E402
from lib_lcm.weights.verification import sha256_file, verify_file  # noqa: E402

LORA_SIZES_MB = {"sd15": 134.621556, "sdxl": 393.855224}


def _fake_checkpoint(path: Path, label: str) -> None:
    from tests.fixtures import layouts

    header = {k: {"dtype": "F16", "shape": list(v), "data_offsets": [0, 0]}
              for k, v in layouts.real_checkpoint_shapes(label).items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def _prepare(root: Path, checkpoints: int) -> dict:
    (root / "modules").mkdir(parents=True)
    (root / "modules" / "paths_internal.py").write_text("")
    (root / "launch.py").write_text("")
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for i in range(checkpoints):
        _fake_checkpoint(folder / f"model-{i:02d}.safetensors", "sd1")
    shipped = json.loads(default_registry_path().read_text())
    lora_dir = root / "models" / "Lora"
    blobs = {}
    for variant, entry in shipped["variants"].items():
        blobs[variant] = f"stand-in for {variant}".encode() * 64
        entry.update(size=len(blobs[variant]), sha256=hashlib.sha256(blobs[variant]).hexdigest(),
                     verified=True, revision="0" * 40)
    registry_path = root / "registry.json"
    registry_path.write_text(json.dumps(shipped))
    registry = load_registry(registry_path)
    make_folders(lora_dir)
    for variant, entry in registry.items():
        files = LoraFiles(entry, lora_dir)
        files.target.write_bytes(blobs[variant])
        files.write_record(verify_file(entry, files.target))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LCM_LORA_"))}
    env.update(PYTHONPATH=str(root), COMMANDLINE_ARGS="", LCM_LORA_REGISTRY=str(registry_path),
               HF_ENDPOINT="http://127.0.0.1:9")  # a request would fail loudly, not reach the internet
    return {"env": env, "registry": registry, "lora_dir": lora_dir}


def _wall(command, cwd, env, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0 or done.stdout or done.stderr:
            raise SystemExit(f"not a silent no-op: rc={done.returncode} {done.stdout!r} {done.stderr!r}")
    return times


def bench_noop(runs: int, checkpoints: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "webui"
        setup = _prepare(root, checkpoints)
        install = [sys.executable, str(ROOT / "install.py")]
        baseline = _wall([sys.executable, "-c", "pass"], root, setup["env"], runs)
        results = {"python_startup_s": statistics.median(baseline)}
        sd15_only = setup["registry"]
        for variant in ("sdxl", "ssd1b"):
            LoraFiles(sd15_only[variant], setup["lora_dir"]).target.unlink()
        env = dict(setup["env"], LCM_LORA_DOWNLOAD="auto")
        _wall(install, root, env, 1)  # first launch fills the checkpoint label cache
        results["auto_s"] = statistics.median(_wall(install, root, env, runs))
        results["auto_uncached_s"] = _uncached(install, root, env, runs, setup["lora_dir"])
        for variant in ("sdxl", "ssd1b"):
            files = LoraFiles(sd15_only[variant], setup["lora_dir"])
            files.target.write_bytes(f"stand-in for {variant}".encode() * 64)
            files.write_record(verify_file(files.entry, files.target))
        results["all_s"] = statistics.median(_wall(install, root, dict(setup["env"], LCM_LORA_DOWNLOAD="all"), runs))
    return results


def _uncached(install, root, env, runs, lora_dir) -> float:
    cache = state_folder(lora_dir) / "checkpoints.json"
    times = []
    for _ in range(runs):
        cache.unlink(missing_ok=True)
        times += _wall(install, root, env, 1)
    return statistics.median(times)


def bench_sha256(megabytes: int) -> dict:
    block = os.urandom(16 * 1024 * 1024)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        for _ in range(max(1, megabytes // 16)):
            f.write(block)
        path = f.name
    try:
        size = os.path.getsize(path)
        sha256_file(path)  # warm the page cache
        times = []
        for _ in range(3):
            started = time.perf_counter()
            sha256_file(path)
            times.append(time.perf_counter() - started)
    finally:
        os.unlink(path)
    seconds = min(times)
    rate = size / 1e6 / seconds
    return {"sha256_mb": size / 1e6, "sha256_mb_per_s": rate,
            **{f"sha256_{v}_s": mb / rate for v, mb in LORA_SIZES_MB.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--hash-mb", type=int, default=256)
    args = parser.parse_args()
    result = {"runs": args.runs, "checkpoints": args.checkpoints, "python": sys.version.split()[0]}
    result.update(bench_noop(args.runs, args.checkpoints))
    result.update(bench_sha256(args.hash_mb))
    print(f"install.py no-op, median of {args.runs} subprocess runs ({args.checkpoints} checkpoints):")
    print(f"  {'bare python -c pass':44} {result['python_startup_s'] * 1000:7.1f} ms")
    print(f"  {'LCM_LORA_DOWNLOAD=auto (labels cached)':44} {result['auto_s'] * 1000:7.1f} ms")
    print(f"  {'LCM_LORA_DOWNLOAD=auto (headers re-read)':44} {result['auto_uncached_s'] * 1000:7.1f} ms")
    print(f"  {'LCM_LORA_DOWNLOAD=all':44} {result['all_s'] * 1000:7.1f} ms")
    print(f"sha256 of {result['sha256_mb']:.0f} MB (page cache): {result['sha256_mb_per_s']:.0f} MB/s "
          f"-> SD1.5 LoRA {result['sha256_sd15_s']:.2f} s, SDXL LoRA {result['sha256_sdxl_s']:.2f} s")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
