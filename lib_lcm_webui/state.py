"""The per-generation state LCM-LoRA keeps on the host's processing object `p`, and the deferred error.

One frozen object on `p` (attribute `lcm_lora`), always replaced, never mutated: the X/Y/Z script makes a
shallow copy of `p` per cell, and a shared mutable object would leak one cell's axis values into the next.

The host swallows exceptions raised in script hooks and generates anyway, so a problem found in a hook is
recorded here (`defer_failure_to_sampler`) and raised by our sampler before its first UNet call (`raise_pending_error`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from lib_lcm.params import INFOTEXT_WARNING, SAMPLER_LCM, LcmSettings

try:  # the WebUI always ships fastapi; the glue's unit tests may run without it
    from fastapi import HTTPException
except ImportError:
    HTTPException = None

ATTRIBUTE = "lcm_lora"


@dataclass(frozen=True)
class LcmGeneration:
    """`overrides`: X/Y/Z axis values merged over the panel's; `settings`: what the panel/API asked for this
    generation (None until before_process); `error`: why it must not run; `recipe`: the recipe of the file the
    family uses on the loaded checkpoint (set in process; None for LCM-LoRA, whose mode picks the sampler)."""

    overrides: dict = field(default_factory=dict)
    settings: LcmSettings | None = None
    error: str | None = None
    recipe: str | None = None

    @property
    def enabled(self) -> bool:
        return self.settings is not None and self.settings.enabled


def generation_state(p) -> LcmGeneration:
    return getattr(p, ATTRIBUTE, None) or LcmGeneration()


def update_generation_state(p, **changes) -> LcmGeneration:
    state = replace(generation_state(p), **changes)
    setattr(p, ATTRIBUTE, state)
    return state


class LcmLoraError(RuntimeError):
    """A generation LCM-LoRA cannot run, with a message that names the fix."""


class GenerationAborted(HTTPException or LcmLoraError):
    """Aborts a generation from inside the sampler. In a real host it is an HTTPException (not an LcmLoraError), so
    the WebUI answers API callers 422 with the message and prints no traceback; in the UI the message is shown."""

    def __init__(self, message: str):
        if HTTPException is None:
            super().__init__(message)
        else:
            super().__init__(status_code=422, detail=message)
        self.message = message

    def __str__(self):
        return self.message


def abort_generation(message: str):
    raise GenerationAborted(message)


def defer_failure_to_sampler(p, message: str) -> None:
    """Record `message` on `p` and route the generation (and its hires pass) to our sampler, which raises it
    before its first UNet call: the host swallows exceptions raised in script hooks."""
    print(message)
    update_generation_state(p, error=message)
    p.sampler_name = SAMPLER_LCM
    if getattr(p, "enable_hr", False):
        p.hr_sampler_name = SAMPLER_LCM


def raise_pending_error(p) -> None:
    """Abort a generation `defer_failure_to_sampler` marked."""
    message = generation_state(p).error
    if message:
        abort_generation(message)


def add_infotext_warning(p, message: str) -> None:
    """Add `message` to the image's "LCM-LoRA warning" infotext; warnings set earlier in the generation stay."""
    params = p.extra_generation_params
    params[INFOTEXT_WARNING] = "; ".join(filter(None, (params.get(INFOTEXT_WARNING), message)))
