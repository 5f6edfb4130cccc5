"""The one wording of download progress, for the console, the panel and the WebUI's progress text.

Sizes are decimal megabytes (1 MB = 10**6 bytes, one decimal), the unit the hub and docs/weights.md use.
"""
from __future__ import annotations


def megabytes(n: int) -> str:
    """``n`` bytes as "134.6 MB"."""
    return f"{n / 1e6:.1f} MB"


def progress_text(stem: str, done: int, total: int | None) -> str:
    """"Downloading lcm-lora-sdv1-5: 42% of 134.6 MB"; without a total (None or 0) "Downloading
    lcm-lora-sdv1-5: 12.3 MB". The percentage is rounded down, so 100% means done."""
    if not total:
        return f"Downloading {stem}: {megabytes(done)}"
    return f"Downloading {stem}: {done * 100 // total}% of {megabytes(total)}"
