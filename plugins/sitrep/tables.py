"""The tables every command prints: a cell is shown as written, never read as Rich markup.

Titles, feed names, errors and query results come from pages and feeds on the web or from the user's
SQL: "[/i] Kharkiv" crashed a listing with a traceback, and "[bold]", "[video]" or
"[link=https://...]" silently changed what was shown. Style a cell by passing a ``rich.text.Text``.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table as _RichTable
from rich.text import Text

__all__ = ["Table"]


class Table(_RichTable):
    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in renderables), **kwargs)
