"""Extra ``sitrep`` subcommands, one module each, discovered at start-up.

A module here defines ``register(subparsers)``, which adds its parser(s) with ``set_defaults(func=...)``;
``func(args) -> int`` returns the exit status. Raise :class:`sitrep.errors.SitrepError` for anything
the user can fix: the CLI prints it as one line.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
from collections.abc import Callable
from typing import NoReturn

_BIGINT = 2**63 - 1


def register_all(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}").register(subparsers)


def number(kind: type[int] | type[float], low: float, high: float = _BIGINT) -> Callable[[str], float]:
    """An argparse type for a number in [low, high]: "--limit -5", "--days inf" or a limit past bigint
    reached the database and came back as its error ("LIMIT must not be negative", "value out of range")."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and low <= value <= high):
            what = "a whole number" if kind is int else "a number"
            span = f"of at least {_shown(low)}" if high == _BIGINT else f"from {_shown(low)} to {_shown(high)}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {what} {span}")
        return value

    return parse


def _shown(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


class UsageError(Exception):
    """A mistake in a command line, as one line (argparse prints a usage block, then the error)."""


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes end as one line: ``error: --limit: -5 is out of range: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message.removeprefix('argument ')} (`{self.prog} --help` says more)")
