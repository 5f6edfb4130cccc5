"""One console line per distinct message per process: warnings that would otherwise repeat with every image."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=64)
def say_once(line: str) -> None:
    print(line)
