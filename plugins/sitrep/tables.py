"""What every command prints (consoles, tables, error lines, ages): outside text shown as written.

A cell is shown as written, never read as Rich markup.

Titles, feed names, errors and query results come from pages and feeds on the web or from the user's
SQL: "[/i] Kharkiv" crashed a listing with a traceback, and "[bold]", "[video]" or
"[link=https://...]" silently changed what was shown. Style a cell by passing a ``rich.text.Text``.
Error lines hold the same outside text (a path, a URL, a database message, a log's tail): ``error_text``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table as _RichTable
from rich.text import Text

__all__ = ["Table", "ago", "console", "err_console", "error_text", "make_console", "rhythm_text", "step_text", "warning_text"]


def make_console(stderr: bool = False) -> Console:
    """Rich console; when output is not a terminal (CI, a pipe) use a wide page rather than 80 columns.

    No markup: what we print holds paths, URLs, feed names and database messages from outside, in which
    "[/x]" raised a MarkupError and "[bold]" vanished. Style with ``rich.text.Text`` instead.
    """
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, markup=False, width=None if probe.is_terminal else 160)


console = make_console()
err_console = make_console(stderr=True)


def error_text(message: str) -> Text:
    """``error: <message>`` with the message shown as written: "[/x].yaml" in a path is not markup."""
    return Text.assemble(("error:", "red"), " ", message)


def warning_text(message: str) -> Text:
    """``warning: <message>``, the message shown as written."""
    return Text.assemble(("warning:", "yellow"), " ", message)


def step_text(number: int, message: str) -> Text:
    """A numbered step of a long command (the demo's), its number in bold."""
    return Text.assemble((f"{number}.", "bold"), " ", message)


class Table(_RichTable):
    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in renderables), **kwargs)


def _in_largest_unit(seconds: float) -> tuple[float, str]:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return seconds / size, unit
    return seconds, "s"


def ago(when: datetime | None) -> str:
    """How long ago (or, for a time to come, how soon), in the largest whole unit: "3h ago", "in 5m"."""
    if when is None:
        return "never"
    seconds = (datetime.now(UTC) - when).total_seconds()
    if seconds < 0:
        return f"in {int(-seconds // 60)}m"
    amount, unit = _in_largest_unit(seconds)
    return f"{int(amount)}{unit} ago"


def rhythm_text(rhythm: timedelta | None) -> str:
    """A feed's usual gap between new entries, rounded: "~20m"."""
    if rhythm is None:
        return "-"
    amount, unit = _in_largest_unit(rhythm.total_seconds())
    return f"~{amount:.0f}{unit}"
