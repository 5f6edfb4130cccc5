"""Fetch the LCM-LoRA weights the user's checkpoints need into the WebUI's Lora folder.

The WebUI runs this at every launch (unless --skip-install) and after "Install from URL", as
``python install.py`` with cwd = the WebUI root, PYTHONPATH = the WebUI root and no timeout; it only
sees the launch flags through COMMANDLINE_ARGS. So this script:

- returns at once, without importing torch or huggingface_hub and without any network request, when the
  wanted files are present and their verification record matches (no hashing);
- otherwise starts ``python -m lib_lcm download`` detached and waits for it at most
  ``LCM_LORA_INSTALL_TIMEOUT`` seconds in all (default 12, counted from this script's start, whatever the
  number of variants); a download still running then carries on in the background, never cut half-way.
  The worker stops at the first sign that the hub cannot be reached at all (no answer within
  HF_HUB_ETAG_TIMEOUT, default 10 s; refused; DNS), for every variant at once;
- writes only into the Lora folder of a WebUI that is really there (lib_lcm.weights.webui_folders), never at a guess;
- skips the network entirely with HF_HUB_OFFLINE=1 (the WebUI fetches the file on first use);
- always exits 0 and prints at most a few ``LCM-LoRA:`` lines (one on failure), never a traceback.

``LCM_LORA_DOWNLOAD``: ``auto`` (default: the LCM-LoRA variants matching the checkpoints found in the
checkpoint folders, sd15 when none is recognised), ``all`` (every LCM-LoRA variant), ``none``, or a comma list of
variant ids and families (``sd15,lightning``). Files of the other few-step families (TCD, Hyper-SD,
SDXL-Lightning, DMD2: up to ~790 MB each) are fetched at start-up only when named there; otherwise on first use.
"""
import os
import re
import subprocess
import sys
import time

EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WAIT_SECONDS = 12.0


def say(line):
    print(f"LCM-LoRA: {line}", flush=True)


# lib_lcm is imported inside the functions, after main() has put the extension on sys.path, so that even a
# broken lib_lcm ends in one "install step skipped" line and exit 0 (see the bottom of this file).


def accept_file_on_disk(files):
    """A file put in place by hand (or with a stale record) is hashed here: no network, no heavy import."""
    verification = files.verify_on_disk()
    if verification is not None and verification.ok:
        say(f"{files.target} verified ({verification.method}).")
    return verification is not None and verification.ok


def wait_seconds():
    try:
        return max(0.0, float(os.environ.get("LCM_LORA_INSTALL_TIMEOUT", DEFAULT_WAIT_SECONDS)))
    except ValueError:
        return DEFAULT_WAIT_SECONDS


def start_worker(variants, lora_dir):
    """``python -m lib_lcm download`` in its own session, output to .state/download.log.

    Its stdout/stderr must not be the pipes the WebUI reads from us, or the WebUI would wait for it.
    """
    from lib_lcm.weights.lora_files import make_folders

    log_path = make_folders(lora_dir) / "download.log"
    command = [sys.executable, "-m", "lib_lcm", "download", "--variant", ",".join(variants),
               "--lora-dir", str(lora_dir), "--progress-lines"]
    env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1")
    options = {}
    if os.name == "nt":
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
    else:
        options["start_new_session"] = True
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=EXTENSION_DIR, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, **options)
    return process, log_path


def report(log_path, failed, code):
    """The worker's "installed" lines, then one line for whatever is still missing."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("LCM-LoRA: installed "):
            print(line, flush=True)
    if not failed:
        return
    # The worker's own summary when the hub could not be reached at all, else the gist of its first error.
    reasons = [line[len("LCM-LoRA: "):] for line in lines if line.startswith("LCM-LoRA: the hub at ")]
    reasons += [line.split(": ", 2)[2] for line in lines if any(line.startswith(f"LCM-LoRA: {v}: ") for v in failed)]
    reason = re.split(r"; |\. ", reasons[0], maxsplit=1)[0] if reasons else f"exit code {code}"
    say(f"{', '.join(failed)} not downloaded: {reason}; the WebUI starts anyway and fetches "
        f"{'it' if len(failed) == 1 else 'them'} on first use (details: {log_path}).")


def main():
    started = time.monotonic()
    if EXTENSION_DIR not in sys.path:
        sys.path.insert(0, EXTENSION_DIR)
    from lib_lcm.weights.errors import WeightsError
    from lib_lcm.weights.hub_env import hub_offline
    from lib_lcm.weights.lora_files import LoraFiles
    from lib_lcm.weights.registry import DOWNLOAD_MODE_ENV, current_registry
    from lib_lcm.weights.webui_folders import WebuiFolderError, wanted_variants, webui_dirs

    try:
        registry = current_registry()
        dirs = webui_dirs(EXTENSION_DIR)
        variants = wanted_variants(os.environ.get(DOWNLOAD_MODE_ENV, "auto"), registry, dirs)
    except WebuiFolderError:
        say(f"no WebUI found around {EXTENSION_DIR} (no launch.py and modules/paths_internal.py); nothing was "
            "downloaded, the weights will be fetched on first use.")
        return
    except WeightsError as exc:
        say(f"{exc} Weights will be fetched on first use instead.")
        return
    missing = []
    for variant in variants:
        files = LoraFiles(registry[variant], dirs.lora_dir)
        if not files.is_installed() and not accept_file_on_disk(files):
            missing.append(variant)
    if not missing:
        return
    if hub_offline():
        say(f"HF_HUB_OFFLINE is set: not downloading {', '.join(missing)}; "
            "the weights will be fetched on first use, or run `python -m lib_lcm download` when online.")
        return
    try:
        process, log_path = start_worker(missing, dirs.lora_dir)
    except (OSError, WeightsError) as exc:
        say(f"could not start the download ({exc}); the weights will be fetched on first use.")
        return
    try:
        code = process.wait(timeout=max(wait_seconds() - (time.monotonic() - started), 0.0))
    except subprocess.TimeoutExpired:
        say(f"still fetching {', '.join(missing)} in the background (pid {process.pid}, log {log_path}); "
            "the WebUI starts now and uses each file once it is verified.")
        return
    report(log_path, [v for v in missing if not LoraFiles(registry[v], dirs.lora_dir).is_installed()], code)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # install.py must never stop the WebUI from starting
        say(f"install step skipped ({type(exc).__name__}: {exc}); the weights will be fetched on first use.")
    sys.exit(0)
