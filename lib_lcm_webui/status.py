"""The panel's status line (the loaded checkpoint, the file the chosen family uses on it, its recipe, whether that
file is there) and the Download button behind it."""
from __future__ import annotations

import html
import threading
from dataclasses import dataclass, replace

import gradio as gr
from modules import sd_models, shared

from lib_lcm.architecture import architecture_name
from lib_lcm.families import DEFAULT_FAMILY, family_key
from lib_lcm.params import SAMPLERS_BY_RECIPE
from lib_lcm.recipes import RECIPES
from lib_lcm.weights import catalogue, download, registry
from lib_lcm.weights.errors import WeightsError
from lib_lcm.weights.lora_files import weights_status
from lib_lcm.weights.progress import progress_text
from lib_lcm_webui import live
from lib_lcm_webui.checkpoint import detect_loaded_checkpoint
from lib_lcm_webui.compat import forge
from lib_lcm_webui.download_guard import DownloadRunning, exclusive_download


@dataclass(frozen=True)
class PanelStatus:
    """What the status line says.

    `stem` is None when the checkpoint has no LCM-LoRA (or no checkpoint is loaded); `problem` is a message
    that replaces the usual text (unsupported checkpoint, download error, ...); `checked` is False for the
    placeholder shown before the server has looked.
    """

    checkpoint: str | None = None
    architecture: str | None = None
    variant: str | None = None
    stem: str | None = None
    installed: bool = False
    verified: bool = False
    problem: str | None = None
    progress: str | None = None
    checked: bool = True
    note: str | None = None  # said after the usual text (Live's fast-decode fallback)
    recipe: str | None = None  # a family other than LCM-LoRA: its file's recipe (the page sets its sampler)

    @property
    def needs_download(self) -> bool:
        return self.stem is not None and not self.installed


PLACEHOLDER = PanelStatus(problem="Checking the loaded checkpoint...", checked=False)


def panel_status(sd_model, lora_dir, entries=None, family: str = DEFAULT_FAMILY, steps: int = 4) -> PanelStatus:
    """Status for `sd_model` (None: nothing loaded) with the files under `lora_dir`, for `family` at `steps`."""
    if sd_model is None:
        return PanelStatus(problem="No checkpoint is loaded yet.")
    found = detect_loaded_checkpoint(sd_model)
    try:
        entries = entries if entries is not None else registry.current_registry()
        known = _family_file(found, entries, family, steps)
        if known.stem is None:
            return known
        rows = weights_status(lora_dir, entries)
    except WeightsError as e:
        return PanelStatus(found.checkpoint, found.architecture, found.variant, found.stem, problem=str(e))
    row = next((row for row in rows if row["variant"] == known.variant), None)
    if row is None:
        return replace(known, problem=f"The weights registry has no entry for {known.variant}.")
    return replace(known, installed=bool(row["installed"]), verified=bool(row["verified"]))


def _family_file(found, entries, family: str, steps: int) -> PanelStatus:
    """The file `family` uses on the checkpoint `found` at `steps` (LCM-LoRA: the checkpoint's own variant)."""
    if family == DEFAULT_FAMILY:
        return PanelStatus(found.checkpoint, found.architecture, found.variant, found.stem)
    try:
        entry = catalogue.select_entry(entries, family, found.architecture, steps)
    except catalogue.NoFileForArchitecture as e:
        return PanelStatus(found.checkpoint, found.architecture, problem=f"{e}.")
    return PanelStatus(found.checkpoint, found.architecture, entry.variant, entry.stem, recipe=entry.recipe,
                       note=catalogue.steps_warning(entry, steps))


def _describe(status: PanelStatus, stem: str) -> str:
    if status.problem:
        return f'<span class="lcm-lora-problem">{html.escape(status.problem)}</span>'
    if status.checkpoint and not stem:
        return ('<span class="lcm-lora-problem">LCM-LoRA is not supported for this model (it exists for '
                "SD 1.5, SDXL and SSD-1B and their inpainting models).</span>")
    if not stem:
        return ""
    uses = f"uses <code>{html.escape(stem)}</code>:"
    if status.recipe:
        uses = f"uses <code>{html.escape(stem)}</code> ({html.escape(RECIPES[status.recipe].scheduler)}):"
    if status.installed:
        return f"{uses} {'installed, verified' if status.verified else 'installed'}."
    if status.progress:
        return uses
    return f"{uses} not installed yet (downloaded on first use, or press Download)."


def status_html(status: PanelStatus) -> str:
    """The status line; `data-lcm-stem` tells the page logic which `<lora:STEM>` to write ("" = none; no
    attribute = not known yet)."""
    stem = status.stem or ""
    attrs = 'class="lcm-lora-status"'
    if status.checked:
        attrs += f' data-lcm-stem="{html.escape(stem)}" data-lcm-installed="{str(status.installed).lower()}"'
        if status.recipe:  # the family's sampler, which the page sets instead of the mode's
            attrs += f' data-lcm-sampler="{html.escape(SAMPLERS_BY_RECIPE[status.recipe])}"'
    parts = []
    if status.checkpoint:
        family = architecture_name(status.architecture or "")
        parts.append(f"Checkpoint <b>{html.escape(status.checkpoint)}</b> ({html.escape(family)})")
    description = _describe(status, stem)
    if description:
        parts.append(description)
    if status.progress:
        parts.append(f'<span class="lcm-lora-progress">{html.escape(status.progress)}</span>')
    if status.note:
        parts.append(f'<span class="lcm-lora-note-inline">{html.escape(status.note)}</span>')
    return f"<div {attrs}>{' '.join(parts)}</div>"


def current_status(problem: str | None = None, family: str = DEFAULT_FAMILY, steps: int = 4) -> PanelStatus:
    """Status for the WebUI's loaded checkpoint (waits while the host is still loading it); `problem`
    replaces the usual text."""
    try:
        sd_model = forge.describable_model(shared.sd_model, sd_models)
    except Exception as e:  # the host failed to load any checkpoint
        return PanelStatus(problem=f"No checkpoint is loaded ({e}).")
    status = panel_status(sd_model, shared.cmd_opts.lora_dir, family=family, steps=steps)
    notes = [note for note in (status.note, live.fast_decode_note()) if note]
    status = replace(status, note="; ".join(notes) or None)
    return replace(status, problem=problem) if problem else status


def panel_family(family=None, steps=None) -> tuple[str, int]:
    """The panel's Family (a label or a key) and Steps as (key, steps), LCM-LoRA's where not given."""
    key = family_key(family) if family is not None else None
    try:
        steps = int(steps)
    except (TypeError, ValueError):
        steps = 4
    return key or DEFAULT_FAMILY, steps


def status_outputs(status: PanelStatus):
    """(status line, Download button update)."""
    return status_html(status), gr.update(visible=status.needs_download and not status.progress)


def refresh_status(family=None, steps=None):
    return status_outputs(current_status(None, *panel_family(family, steps)))


def on_download_click(family=None, steps=None):
    """Generator for the Download button: the status line shows the progress, then the result.

    A click is the user's consent, so this downloads whatever the settings' download policy says.
    """
    chosen = panel_family(family, steps)
    status = current_status(None, *chosen)
    if not status.needs_download:
        yield status_outputs(status)
        return
    seen = {"text": "Starting the download..."}
    outcome = {}

    def progress(done: int, total):
        seen["text"] = progress_text(status.stem, done, total)

    def run():
        try:
            with exclusive_download(status.variant, status.stem):
                download.ensure_weights(status.variant, shared.cmd_opts.lora_dir, progress=progress)
        except (WeightsError, DownloadRunning) as e:
            outcome["error"] = str(e)
        except Exception as e:  # shown in the panel: a traceback in the console helps no one here
            outcome["error"] = f"Download failed: {e}"

    worker = threading.Thread(target=run, name="lcm-lora-download", daemon=True)
    worker.start()
    while worker.is_alive():
        yield status_outputs(replace(status, progress=seen["text"]))
        worker.join(timeout=0.5)
    yield status_outputs(current_status(outcome.get("error"), *chosen))
