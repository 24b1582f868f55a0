"""Extra ``sitrep`` subcommands, one module each, discovered at start-up.

A module here defines ``register(subparsers)``, which adds its parser(s) with ``set_defaults(func=...)``;
``func(args) -> int`` returns the exit status. Raise :class:`sitrep.errors.SitrepError` for anything
the user can fix: the CLI prints it as one line.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil


def register_all(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}").register(subparsers)
