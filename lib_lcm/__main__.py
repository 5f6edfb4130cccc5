"""``python -m lib_lcm download|status``: LCM-LoRA weights for headless servers and container images.

Run from the extension folder (``extensions/sd-webui-lcm-lora``). Exit codes:
0 done, 1 unexpected error, 2 bad arguments or registry, 3 network (offline, unreachable, timeout,
server error: retry later), 4 not found on the hub (moved repo, needs a token), 5 verification failed,
6 local filesystem (read-only, disk full), 7 another process kept the download lock.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lib_lcm.errors import WeightsError
from lib_lcm.lora_files import weights_status
from lib_lcm.progress import progress_text
from lib_lcm.registry import current_registry, parse_variants
from lib_lcm.webui_folders import webui_dirs

EXTENSION_DIR = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib_lcm", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lora_help = "the WebUI's Lora folder (default: from COMMANDLINE_ARGS, else <webui>/models/Lora)"

    download = commands.add_parser("download", help="download and verify LCM-LoRA weights")
    download.add_argument("--variant", "-v", action="append", default=None,
                          help="sd15, sdxl, ssd1b, all, or a comma list (repeatable; default: all)")
    download.add_argument("--lora-dir", help=lora_help)
    download.add_argument("--timeout", type=float, default=None,
                          help="seconds to wait for the hub to answer (default HF_HUB_ETAG_TIMEOUT or 10)")
    download.add_argument("--lock-timeout", type=float, default=900.0,
                          help="seconds to wait while another process downloads the same file (default 900)")
    download.add_argument("--progress-lines", action="store_true",
                          help="print a progress line every 10%% (for logs) instead of a progress bar")
    download.add_argument("--quiet", "-q", action="store_true", help="print only errors")

    status = commands.add_parser("status", help="show which weights are installed and verified")
    status.add_argument("--variant", "-v", action="append", default=None,
                        help="variants to check (default: all); exit 1 unless all of them are verified")
    status.add_argument("--lora-dir", help=lora_help)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def _lora_dir(value: str | None) -> Path:
    return Path(value).absolute() if value else webui_dirs(EXTENSION_DIR).lora_dir


class _ProgressLines:
    """``progress`` callback printing a line each time another 10 % is done (log files cannot show a bar)."""

    def __init__(self, stem: str):
        self.stem, self.next_tenth = stem, 1

    def __call__(self, done: int, total: int | None) -> None:
        if not total or self.next_tenth > 10 or done * 10 < total * self.next_tenth:
            return
        while self.next_tenth <= 10 and done * 10 >= total * self.next_tenth:
            self.next_tenth += 1
        print(f"LCM-LoRA: {progress_text(self.stem, done, total)}", flush=True)


def _download(args) -> int:
    from lib_lcm.download import ensure_weights

    registry = current_registry()
    variants = parse_variants(",".join(args.variant or ["all"]), registry)
    if variants is None:
        variants = list(registry)
    lora_dir = _lora_dir(args.lora_dir)
    log = None if args.quiet else print
    if args.progress_lines or args.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    code = 0
    for variant in variants:
        entry = registry[variant]
        progress = _ProgressLines(entry.stem) if args.progress_lines else None
        started = time.monotonic()
        try:
            path = ensure_weights(variant, lora_dir, progress, registry=registry, timeout=args.timeout,
                                  lock_timeout=args.lock_timeout, log=log)
        except WeightsError as exc:
            print(f"LCM-LoRA: {variant}: {exc}", file=sys.stderr, flush=True)
            code = code or exc.exit_code
            continue
        if not args.quiet:
            print(f"LCM-LoRA: {variant} ready: {path} ({time.monotonic() - started:.1f} s)", flush=True)
    return code


def _status(args) -> int:
    registry = current_registry()
    variants = parse_variants(",".join(args.variant or ["all"]), registry)
    wanted = list(registry) if variants is None else variants
    rows = [row for row in weights_status(_lora_dir(args.lora_dir), registry) if row["variant"] in wanted]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            state = f"verified ({row['verification']})" if row["verified"] else (
                "present, not verified yet" if row["installed"] else "missing")
            print(f"{row['variant']:6} {state:26} {row['path']}")
    return 0 if all(row["verified"] for row in rows) else 1


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _download(args) if args.command == "download" else _status(args)
    except WeightsError as exc:
        print(f"LCM-LoRA: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("LCM-LoRA: interrupted; a partial download is resumed next time where possible", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("LCM_LORA_DEBUG"):
            raise
        print(f"LCM-LoRA: unexpected error {type(exc).__name__}: {exc} (set LCM_LORA_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
