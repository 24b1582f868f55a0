"""`make bench`: run every benchmark section and print its table.

A section is a module ``bench/<name>.py`` with ``TITLE`` and ``run(args) -> rich.table.Table | list[Table]``;
``ORDER`` (an int, default 50) sorts them. Sections measure ratios against a baseline measured in the
same run on the same machine; nothing here asserts on time.

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
from pathlib import Path

from rich.console import Console

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
    for module in modules:
        started = time.monotonic()
        console.rule(getattr(module, "TITLE", module.__name__))
        tables = module.run(args)
        for table in tables if isinstance(tables, list) else [tables]:
            console.print(table)
        console.print(f"[dim]{module.__name__}: {time.monotonic() - started:.0f}s[/]")
    if args.out:
        args.out.write_text(console.export_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
