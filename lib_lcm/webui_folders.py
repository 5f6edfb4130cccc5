"""Where the WebUI keeps its Lora and checkpoint folders, and which LCM-LoRA variants the checkpoints need.

For install.py and the CLI, which only see the launch flags in ``COMMANDLINE_ARGS`` (the WebUI glue reads
``shared.cmd_opts`` instead). Standard library only, and no WebUI import: install.py runs before the
WebUI and must stay well under 0.3 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from lib_lcm import architecture
from lib_lcm.errors import WeightsError
from lib_lcm.lora_files import write_json_atomic
from lib_lcm.registry import Registry, variant_for_architecture


@dataclass(frozen=True)
class WebuiDirs:
    lora_dir: Path
    checkpoint_dirs: tuple[Path, ...]


def webui_dirs(extension_dir, commandline_args: str | None = None, environ=None) -> WebuiDirs:
    """The Lora and checkpoint folders the WebUI will use, as A1111 1.10 derives them.

    Mirrors modules/paths_internal.py, cmd_args.py and extensions-builtin/Lora/preload.py: flags come
    from ``COMMANDLINE_ARGS`` (shlex-split); data dir defaults to the WebUI root, models dir to
    ``<data>/models``, Lora dir to ``<models>/Lora``. Flags given on the launch command line itself are
    invisible to install.py: the data dir is then read off the extension's own location
    (``<data>/extensions/<name>``); the WebUI glue passes ``shared.cmd_opts.lora_dir`` instead.
    """
    environ = os.environ if environ is None else environ
    if commandline_args is None:
        commandline_args = environ.get("COMMANDLINE_ARGS", "")
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--data-dir", "--models-dir", "--ckpt-dir", "--lora-dir"):
        parser.add_argument(flag, default=None)
    try:
        args, _ = parser.parse_known_args(shlex.split(commandline_args))
    except (ValueError, SystemExit):
        args = parser.parse_args([])
    data_dir = Path(args.data_dir).absolute() if args.data_dir else _webui_root(extension_dir, environ)
    models_dir = Path(args.models_dir).absolute() if args.models_dir else data_dir / "models"
    lora_dir = Path(args.lora_dir).absolute() if args.lora_dir else models_dir / "Lora"
    checkpoint_dirs = [models_dir / "Stable-diffusion"]
    if args.ckpt_dir:
        checkpoint_dirs.append(Path(args.ckpt_dir).absolute())
    return WebuiDirs(lora_dir, tuple(checkpoint_dirs))


def _webui_root(extension_dir, environ) -> Path:
    # The WebUI keeps extensions in <data dir>/extensions, with or without --data-dir: where this extension
    # sits tells the data dir even when --data-dir was typed on the launch command line (invisible here).
    extension_dir = Path(extension_dir).absolute()
    if extension_dir.parent.name == "extensions":
        return extension_dir.parents[1]
    # Elsewhere (a dev checkout): launch_utils puts the WebUI root first on PYTHONPATH.
    for entry in environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and (Path(entry) / "modules" / "paths_internal.py").is_file():
            return Path(entry).absolute()
    return extension_dir.parents[1]


def list_checkpoints(checkpoint_dirs, limit: int = 2000) -> list[Path]:
    """``*.safetensors`` under the checkpoint folders, like the WebUI's recursive model listing."""
    found = []
    for folder in checkpoint_dirs:
        for root, _, files in os.walk(folder, followlinks=True):
            found += [Path(root) / f for f in files if f.lower().endswith(".safetensors")]
            if len(found) >= limit:
                return found[:limit]
    return found


def variants_for_checkpoints(checkpoint_dirs, registry: Registry, cache_path=None, detect=None, variant_for=None,
                             time_budget: float = 10.0) -> list[str]:
    """The LCM-LoRA variants the user's checkpoints need (safetensors headers only); ["sd15"] if none.

    ``detect(path) -> label`` defaults to ``architecture.detect_checkpoint`` and ``variant_for(label)``
    to ``registry.variant_for_architecture`` on ``registry``. Labels are cached in ``cache_path`` by
    (path, size, mtime_ns) so launches do not re-read unchanged headers. Headers not read within
    ``time_budget`` seconds (huge collections on slow disks) are left for the next launch.
    """
    detect = detect or architecture.detect_checkpoint
    variant_for = variant_for or (lambda label: variant_for_architecture(label, registry))
    labels = _checkpoint_labels(checkpoint_dirs, detect, cache_path, time_budget)
    wanted = []
    for label in labels:
        variant = variant_for(label)
        if variant in registry and variant not in wanted:
            wanted.append(variant)
    if not wanted and "sd15" in registry:
        wanted = ["sd15"]
    return wanted


def _checkpoint_labels(checkpoint_dirs, detect, cache_path, time_budget: float) -> list[str]:
    """The label of each checkpoint, from the cache where size and mtime still match, else ``detect``."""
    cache = {}
    if cache_path is not None:
        try:
            cache = json.loads(Path(cache_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
    fresh = {}
    deadline = time.monotonic() + time_budget
    for path in list_checkpoints(checkpoint_dirs):
        try:
            st = path.stat()
        except OSError:
            continue
        hit = cache.get(str(path)) if isinstance(cache, dict) else None
        if isinstance(hit, list) and hit[:2] == [st.st_size, st.st_mtime_ns]:
            label = hit[2]
        elif time.monotonic() > deadline:
            continue
        else:
            try:
                label = detect(path)
            except Exception:  # an unreadable or exotic checkpoint must not stop the launch
                label = "unknown"
        fresh[str(path)] = [st.st_size, st.st_mtime_ns, label]
    if cache_path is not None and fresh != cache:
        try:
            write_json_atomic(Path(cache_path), fresh)
        except WeightsError:
            pass
    return [label for _, _, label in fresh.values()]
