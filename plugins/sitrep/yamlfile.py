"""Reading the YAML files a user writes or edits: feeds, alert rules, lexicons.

One reader, so that every way such a file can be unreadable (missing, a folder, not UTF-8, a YAML
mistake) is one line that names the file and says what to do, never a traceback or a four-line
parser dump, whichever command or task reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sitrep.errors import ConfigError

__all__ = ["read_yaml"]


def read_yaml(path: Path, *, what: str, fix: str) -> Any:
    """The parsed document; *what* names the file for the user ("the alert rules"), *fix* says what to do."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not {what}; {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: can't read {what} ({exc.strerror or exc}); {fix}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save {what} as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except (ValueError, RecursionError) as exc:  # a value YAML reads but cannot build: a 30th of February
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__}: {first}); fix {what} there") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{at} ({problem}); fix {what} there") from None
