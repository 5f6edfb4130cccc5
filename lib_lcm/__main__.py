"""python -m lib_lcm download|status: the few-step LoRA weights for headless servers and container images.

`download` fetches the LCM-LoRA files by default (`--variant all`), a family's files with `--family` (narrowed
by `--steps` to the file each architecture uses at that step count, and by `--arch`). `status` lists the whole
catalogue; its exit code covers the selection (by default the LCM-LoRA files, as always).

Run from the extension folder (<webui>/extensions/sd-webui-lcm-lora) with the WebUI's python. The Lora folder
is the one of a WebUI that is really there (lib_lcm.weights.webui_folders: its launch files, or --webui-dir), or
--lora-dir, which must exist (download --create-lora-dir creates it); nothing is written at a guessed place.
Exit codes: 0 done, 1 unexpected error, 2 bad arguments, no WebUI found, or bad registry, 3 network
(offline, unreachable, timeout, server error: retry later), 4 not found on the hub (moved repo, needs a
token), 5 verification failed, 6 local filesystem (read-only, disk full), 7 another process kept the lock.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lib_lcm.architecture import ARCHITECTURES
from lib_lcm.families import FAMILY_KEYS
from lib_lcm.weights.catalogue import NoFileForArchitecture, architectures_of, family_entries, select_entry
from lib_lcm.weights.errors import (
    WeightsDownloadDisabledError,
    WeightsError,
    WeightsRegistryError,
    filesystem_error,
)
from lib_lcm.weights.hub_errors import hub_unreachable
from lib_lcm.weights.lora_files import weights_status
from lib_lcm.weights.progress import progress_text
from lib_lcm.weights.registry import DEFAULT_ENDPOINT, current_registry, parse_variants
from lib_lcm.weights.webui_folders import WebuiDirs, WebuiFolderError, wanted_variants, webui_dirs

DESCRIPTION = ("Download and verify the few-step LoRA weights (LCM-LoRA, TCD, Hyper-SD, SDXL-Lightning, DMD2) into "
               "the WebUI's Lora folder, or show their status. Run it from <webui>/extensions/sd-webui-lcm-lora with "
               "the WebUI's python.")
VARIANT_HELP = ("a variant id (see status), all (the LCM-LoRA files), catalogue (every file), none, auto (the "
                "LCM-LoRA files the WebUI's checkpoints need, as install.py picks them), a family, or a comma list; "
                "repeatable")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib_lcm", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="download and verify LCM-LoRA weights")
    status = commands.add_parser("status", help="show which weights are installed and verified")
    for command in (download, status):
        command.add_argument("--variant", "-v", action="append", default=None, help=f"{VARIANT_HELP} (default: all)")
        command.add_argument("--family", "-f", choices=FAMILY_KEYS, help="a family's files")
        command.add_argument("--steps", type=int, help="with --family: the file each architecture uses at this step "
                                                       "count (e.g. --family lightning --steps 4)")
        command.add_argument("--arch", choices=ARCHITECTURES, help="with --family: only files for this architecture")
        command.add_argument("--lora-dir", help="the WebUI's Lora folder; it must exist (default: the Lora folder "
                                                "of the WebUI this extension is in, from COMMANDLINE_ARGS)")
        command.add_argument("--webui-dir", help="the WebUI folder (holding launch.py), when this copy of the "
                                                 "extension is not in its extensions folder")
    download.add_argument("--create-lora-dir", action="store_true", help="create the --lora-dir folder if missing")
    download.add_argument("--timeout", type=float, default=None,
                          help="seconds to wait for the hub to answer (default HF_HUB_ETAG_TIMEOUT or 10)")
    download.add_argument("--lock-timeout", type=float, default=900.0,
                          help="seconds to wait while another process downloads the same file (default 900)")
    download.add_argument("--progress-lines", action="store_true",
                          help="print a progress line every 10%% (for logs) instead of a progress bar")
    download.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def _extension_dir() -> Path:
    """This extension's folder as the user reached it: through a symlinked <webui>/extensions/<name> too."""
    here = Path(os.path.abspath(__file__)).parents[1]
    logical = os.environ.get("PWD", "")  # the shell's working folder keeps the symlink os.getcwd() resolves
    try:
        if os.path.isabs(logical) and os.path.samefile(logical, here):
            return Path(logical)
    except OSError:
        pass
    return here


def _given_lora_dir(value: str, create: bool) -> Path:
    path = Path(os.path.abspath(os.path.expanduser(value)))
    if create and not path.exists():
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise filesystem_error(exc, "creating", path) from None
    if not path.is_dir():
        raise WebuiFolderError(
            f"--lora-dir {path} {'is not a folder' if path.exists() else 'does not exist'}: check the spelling "
            "(a WebUI's Lora folder is <webui>/models/Lora unless its flags say otherwise), or, for download, "
            "add --create-lora-dir to create it."
        )
    return path.resolve()


def _family_variants(args, registry) -> list[str]:
    """``--family`` (``--steps``, ``--arch``) as variant ids: every file of the family, or the one each architecture
    uses at ``--steps`` (lib_lcm.weights.catalogue.select_entry, the panel's rule)."""
    if args.family is None:
        if args.steps is not None or args.arch is not None:
            raise WeightsRegistryError("--steps and --arch choose among a family's files: add --family "
                                       f"({', '.join(FAMILY_KEYS)})")
        return []
    if args.steps is not None and args.steps < 1:
        raise WeightsRegistryError(f"--steps must be at least 1, got {args.steps}")
    labels = [args.arch] if args.arch else architectures_of(registry, args.family)
    try:
        if args.steps is not None:
            return list(dict.fromkeys(select_entry(registry, args.family, label, args.steps).variant
                                      for label in labels))
        if args.arch and args.arch not in architectures_of(registry, args.family):
            select_entry(registry, args.family, args.arch, 1)  # raises, naming the architectures it has
    except NoFileForArchitecture as exc:
        raise WeightsRegistryError(str(exc)) from None
    return [entry.variant for entry in family_entries(registry, args.family)
            if not args.arch or args.arch in entry.architectures]


def _folders(args, registry) -> tuple[Path, list[str]]:
    """The Lora folder and the variants to handle; the WebUI is looked for only where it is needed."""
    family = _family_variants(args, registry)
    words = args.variant or ([] if family else ["all"])
    choice = parse_variants(",".join(words), registry) if words else []
    dirs = None
    if choice is None or args.webui_dir or not args.lora_dir:
        try:
            dirs = webui_dirs(_extension_dir(), webui_dir=args.webui_dir)
        except WebuiFolderError as exc:
            if choice is None and args.lora_dir:
                raise WebuiFolderError(f"--variant auto reads the checkpoints of a WebUI, and {exc}") from None
            raise
    lora_dir = _given_lora_dir(args.lora_dir, getattr(args, "create_lora_dir", False)) if args.lora_dir else None
    if dirs is not None:
        dirs = WebuiDirs(lora_dir or dirs.lora_dir, dirs.checkpoint_dirs)
        lora_dir = dirs.lora_dir
    variants = choice if choice is not None else wanted_variants("auto", registry, dirs)
    return lora_dir, list(dict.fromkeys(variants + family))


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
    """Each variant in turn; after a network-level failure (the hub cannot be reached at all) the others are
    only checked on disk, and one line says which were not tried."""
    from lib_lcm.weights.download import ensure_weights

    registry = current_registry()
    lora_dir, variants = _folders(args, registry)
    log = None if args.quiet else print
    if args.progress_lines or args.quiet:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    code, unreachable, not_tried = 0, None, []
    for variant in variants:
        entry = registry[variant]
        progress = _ProgressLines(entry.stem) if args.progress_lines else None
        started = time.monotonic()
        try:
            path = ensure_weights(variant, lora_dir, progress, registry=registry, timeout=args.timeout,
                                  lock_timeout=args.lock_timeout, allow_download=unreachable is None, log=log)
        except WeightsDownloadDisabledError:
            not_tried.append(variant)
            continue
        except WeightsError as exc:
            print(f"LCM-LoRA: {variant}: {exc}", file=sys.stderr, flush=True)
            code, unreachable = code or exc.exit_code, unreachable or hub_unreachable(exc)
            continue
        if not args.quiet:
            print(f"LCM-LoRA: {variant} ready: {path} ({time.monotonic() - started:.1f} s)", flush=True)
    if unreachable:
        host = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        skipped = f"not trying {', '.join(not_tried)}; " if not_tried else ""
        print(f"LCM-LoRA: the hub at {host} cannot be reached ({unreachable}); {skipped}retry later.",
              file=sys.stderr, flush=True)
    return code


def _state(row: dict) -> str:
    if row["verified"]:
        return f"verified ({row['verification']})"
    if not row["installed"]:
        return f"missing ({row['partial_bytes']} bytes of a download so far)" if row["partial_bytes"] else "missing"
    if row["expected_size"] is not None and row["size"] != row["expected_size"]:
        return f"wrong size ({row['size']} bytes, expected {row['expected_size']})"
    return "present, not verified yet (run download to verify)"


def _status(args) -> int:
    """Every catalogue file without a selection (the exit code then covers the LCM-LoRA files); else the selection."""
    registry = current_registry()
    lora_dir, wanted = _folders(args, registry)
    selected = bool(args.variant or args.family)
    rows = [row for row in weights_status(lora_dir, registry) if not selected or row["variant"] in wanted]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        states = [_state(row) for row in rows]
        width = max(map(len, states), default=0)
        name_width = max((len(row["variant"]) for row in rows), default=6)
        for row, state in zip(rows, states, strict=True):
            print(f"{row['variant']:{name_width}} {state:{width}}  {row['path']}")
    return 0 if all(row["verified"] for row in rows if row["variant"] in wanted) else 1


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
