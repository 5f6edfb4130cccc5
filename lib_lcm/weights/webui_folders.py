"""Where the WebUI keeps its Lora and checkpoint folders, and which LCM-LoRA variants the checkpoints need.

For install.py and the CLI, which only see the launch flags in ``COMMANDLINE_ARGS`` (the WebUI glue reads
``shared.cmd_opts`` instead). Standard library only, and no WebUI import: install.py runs before the
WebUI and must stay well under 0.3 s.

Nothing is guessed: the folders are derived only from a WebUI that is really there, i.e. a folder holding
its launch files (``launch.py`` and ``modules/paths_internal.py``), found in this order: the folder named
by ``--webui-dir``; the extension's grandparent when the extension sits in ``<webui>/extensions/<name>``;
an entry of ``PYTHONPATH`` (the WebUI puts its root there for install.py); the parent of the running
Python's prefix (``<webui>/venv``); the working folder (the WebUI runs install.py from its root). Without
one, ``WebuiFolderError`` (exit code 2) names ``--webui-dir`` and ``--lora-dir``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib_lcm import architecture
from lib_lcm.weights.errors import WeightsError
from lib_lcm.weights.lora_files import LoraFiles, state_folder, write_json_atomic
from lib_lcm.weights.registry import Registry, family_variants, parse_variants, variant_for_architecture

LAUNCH_FILES = ("launch.py", os.path.join("modules", "paths_internal.py"))


class WebuiFolderError(WeightsError):
    """No WebUI found where one is needed, or a folder named on the command line is not there."""

    exit_code = 2


@dataclass(frozen=True)
class WebuiDirs:
    lora_dir: Path
    checkpoint_dirs: tuple[Path, ...]


def is_webui_root(folder) -> bool:
    """True when ``folder`` holds the WebUI's launch files (A1111 and its forks: Forge, reForge)."""
    return all((Path(folder) / name).is_file() for name in LAUNCH_FILES)


def webui_dirs(extension_dir, commandline_args: str | None = None, environ=None, *, webui_dir=None,
               cwd=None, prefix=None) -> WebuiDirs:
    """The Lora and checkpoint folders the WebUI will use, as A1111 1.10 derives them.

    Mirrors modules/paths_internal.py, cmd_args.py and extensions-builtin/Lora/preload.py: flags come
    from ``COMMANDLINE_ARGS`` (shlex-split); data dir defaults to the WebUI root, models dir to
    ``<data>/models``, Lora dir to ``<models>/Lora``; relative flags are read from the WebUI root, where
    webui.sh runs the WebUI. Flags given on the launch command line itself are
    invisible to install.py: the data dir is then read off the extension's own location
    (``<data>/extensions/<name>``, where the WebUI keeps its extensions). The WebUI root must be found
    (module docstring; ``cwd`` and ``prefix`` default to this process's); else WebuiFolderError.
    Returned paths are absolute and normalised (no ``..``), symlinks resolved.
    """
    environ = os.environ if environ is None else environ
    if commandline_args is None:
        commandline_args = environ.get("COMMANDLINE_ARGS", "")
    args = _launch_flags(commandline_args)
    extension_dir = Path(os.path.abspath(extension_dir))
    root = find_webui_root(extension_dir, environ, webui_dir=webui_dir, cwd=cwd, prefix=prefix)
    data_dir = _absolute(args.data_dir, root) if args.data_dir else _data_dir(extension_dir, root)
    models_dir = _absolute(args.models_dir, root) if args.models_dir else data_dir / "models"
    lora_dir = _absolute(args.lora_dir, root) if args.lora_dir else models_dir / "Lora"
    checkpoint_dirs = [models_dir / "Stable-diffusion"]
    if args.ckpt_dir:
        checkpoint_dirs.append(_absolute(args.ckpt_dir, root))
    return WebuiDirs(lora_dir, tuple(checkpoint_dirs))


def _launch_flags(commandline_args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--data-dir", "--models-dir", "--ckpt-dir", "--lora-dir"):
        parser.add_argument(flag, default=None)
    try:
        args, _ = parser.parse_known_args(shlex.split(commandline_args))
    except (ValueError, SystemExit):
        args = parser.parse_args([])
    return args


def _absolute(path, base=None) -> Path:
    """``path`` resolved; a relative one against ``base`` (the WebUI's own working folder is its root)."""
    path = Path(os.path.expanduser(path))
    return (path if path.is_absolute() or base is None else Path(base) / path).resolve()


def find_webui_root(extension_dir, environ=None, *, webui_dir=None, cwd=None, prefix=None) -> Path:
    """The WebUI root (resolved), from the places in the module docstring; WebuiFolderError when none is one."""
    environ = os.environ if environ is None else environ
    if webui_dir is not None:
        if not is_webui_root(webui_dir):
            raise WebuiFolderError(
                f"--webui-dir {_absolute(webui_dir)} is not a Stable Diffusion WebUI folder (it has no "
                f"{' or '.join(LAUNCH_FILES)}); name the WebUI's own folder, or the Lora folder with --lora-dir."
            )
        return _absolute(webui_dir)
    extension_dir = Path(os.path.abspath(extension_dir))
    candidates = [extension_dir.parents[1]] if extension_dir.parent.name == "extensions" else []
    candidates += [Path(entry) for entry in environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    candidates += [Path(prefix or sys.prefix).parent, Path(cwd or os.getcwd())]
    for candidate in candidates:
        if is_webui_root(candidate):
            return _absolute(candidate)
    raise WebuiFolderError(
        f"no Stable Diffusion WebUI found for {extension_dir} (looked for {' and '.join(LAUNCH_FILES)} in "
        f"{', '.join(dict.fromkeys(str(c) for c in candidates))}): run this from "
        "<webui>/extensions/sd-webui-lcm-lora with the WebUI's python, or name the WebUI folder with "
        "--webui-dir DIR, or the Lora folder with --lora-dir DIR."
    )


def _data_dir(extension_dir: Path, root: Path) -> Path:
    # The WebUI keeps extensions in <data dir>/extensions, with or without --data-dir: where this extension sits
    # tells the data dir even when --data-dir was typed on the launch command line (invisible here). A folder
    # that is itself another WebUI is not this WebUI's data dir (--webui-dir named a different one).
    if extension_dir.parent.name == "extensions":
        data = extension_dir.parents[1]
        if _absolute(data) == root or not is_webui_root(data):
            return _absolute(data)
    return root


def wanted_variants(value: str, registry: Registry, dirs: WebuiDirs) -> list[str]:
    """``LCM_LORA_DOWNLOAD`` / ``--variant`` as variant ids; "auto" reads the checkpoints' headers.

    "auto": every LCM-LoRA variant when all are installed already (no scan needed), else the LCM-LoRA variants
    the checkpoints in ``dirs.checkpoint_dirs`` need (sd15 when none is recognised); labels are cached in
    ``<lora>/LCM-LoRA/.state/checkpoints.json`` where that folder exists (nothing is created here). Files of
    the other families are fetched only when named (a family, a variant id, or "catalogue").
    """
    choice = parse_variants(value, registry)
    if choice is not None:
        return choice
    lcm = family_variants(registry)
    if all(LoraFiles(registry[variant], dirs.lora_dir).is_installed() for variant in lcm):
        return lcm
    cache = state_folder(dirs.lora_dir) / "checkpoints.json"
    return variants_for_checkpoints(dirs.checkpoint_dirs, registry, cache_path=cache if cache.parent.is_dir() else None)


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
