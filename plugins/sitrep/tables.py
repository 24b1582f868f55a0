"""The tables every command prints: a cell is shown as written, never read as Rich markup.

Titles, feed names, errors and query results come from pages and feeds on the web or from the user's
SQL: "[/i] Kharkiv" crashed a listing with a traceback, and "[bold]", "[video]" or
"[link=https://...]" silently changed what was shown. Style a cell by passing a ``rich.text.Text``.
Error lines hold the same outside text (a path, a URL, a database message, a log's tail): ``error_text``.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table as _RichTable
from rich.text import Text

__all__ = ["Table", "error_text", "step_text"]


def error_text(message: str) -> Text:
    """``error: <message>`` with the message shown as written: "[/x].yaml" in a path is not markup."""
    return Text.assemble(("error:", "red"), " ", message)


def step_text(number: int, message: str) -> Text:
    """A numbered step of a long command (the demo's), its number in bold."""
    return Text.assemble((f"{number}.", "bold"), " ", message)


class Table(_RichTable):
    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in renderables), **kwargs)
