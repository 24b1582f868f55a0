"""sitrep's benchmarks (`make bench`): tables of ratios against baselines measured in the same run."""

from __future__ import annotations

from collections.abc import Callable

#: Set by ``python -m bench`` while a section runs (bench/__main__.py); None otherwise (tests, imports).
_say: Callable[[str], None] | None = None


def step(text: str) -> None:
    """Say what the running section does now: a section runs for minutes before its table prints."""
    if _say is not None:
        _say(text)
