"""`make bench`: run every benchmark section and print its table.

A section is a module ``bench/<name>.py`` with ``TITLE`` and ``run(args) -> rich.table.Table | list[Table]``;
``ORDER`` (an int, default 50) sorts them; ``bench.step(text)`` says what it is doing (it runs for
minutes before its table prints). Sections measure ratios against a baseline measured in the same run
on the same machine; nothing here asserts on time.

    python -m bench                 # every section, default sizes
    python -m bench --only fetch    # sections whose name contains "fetch"
    python -m bench --full          # the large sizes too (make bench-full)
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run sections whose name contains this")
    parser.add_argument("--full", action="store_true", help="also the largest sizes (slow)")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables as Markdown to this file")
    args = parser.parse_args(argv)
    console = Console(record=True, width=140)
    console.print(f"sitrep bench on {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
                  f"{platform.machine()}; command: {' '.join(sys.argv)}")
    modules = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or (args.only and not any(o in info.name for o in args.only)):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if hasattr(module, "run"):
            modules.append(module)
    modules.sort(key=lambda m: (getattr(m, "ORDER", 50), m.__name__))
    progress = Console(stderr=True)
    for module in modules:
        started = time.monotonic()
        console.rule(getattr(module, "TITLE", module.__name__))
        with _steps(progress, module.__name__.removeprefix("bench.")):
            tables = module.run(args)
        for table in tables if isinstance(tables, list) else [tables]:
            console.print(table)
        console.print(f"[dim]{module.__name__}: {time.monotonic() - started:.0f}s[/]")
    if args.out:
        args.out.write_text(console.export_text())
    return 0


@contextmanager
def _steps(console: Console, section: str) -> Iterator[None]:
    """Show the section's steps (bench.step) on stderr: a spinner with the section's elapsed time on a
    terminal, gone when its table prints; a timestamped line per step otherwise (a CI log, a file). Twice
    a second, not rich's ten: this process also serves the pipeline's corpus, and its CPU is the web
    server's in that table."""
    with ExitStack() as stack:
        if console.is_terminal:
            progress = stack.enter_context(Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                                    TimeElapsedColumn(), console=console, transient=True,
                                                    refresh_per_second=2))
            task = progress.add_task(section)
            bench._say = lambda text: progress.update(task, description=f"{section}: {text}")
        else:
            bench._say = lambda text: console.print(f"[{time.strftime('%H:%M:%S')}] {section}: {text}", soft_wrap=True,
                                                    markup=False, highlight=False)  # a line each, unwrapped
        try:
            yield
        finally:
            bench._say = None


if __name__ == "__main__":
    sys.exit(main())
