"""The ingestion process the chaos harness kills: plan -> poll -> collect -> load, as the DAG runs them.

    python -m tests.chaos.child [--mode all|due]

Settings come from the environment (SITREP_DATABASE_URL, ...), as in an Airflow task. Faults are
injected here, in the test's own process, never in the package: the harness sets

    SITREP_CHAOS_KILL_AT=<stage>     SIGKILL this process group when <stage> starts ...
    SITREP_CHAOS_KILL_DELAY=<s>      ... after <s> seconds (0: at once, synchronously, at that point)
    SITREP_CHAOS_PAUSE_AT=<stage>    sleep SITREP_CHAOS_PAUSE seconds when <stage> starts (the harness
                                     restarts the database meanwhile)

Stages: poll, fetch (the page requests), extract (the worker pool starts; pages stream through it), stage (inside the collect
transaction), load (inside the load transaction, after the reports were inserted, before commit).
Each stage prints ``CHAOS stage=<name>`` when it starts, so a parent can time an outside kill.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

STAGES = ("poll", "fetch", "extract", "stage", "load")
_STARTED = time.monotonic()


def _kill_now() -> None:
    """SIGKILL the whole process group (the worker pool too), as a machine or container dies."""
    sys.stdout.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _on_stage(stage: str) -> None:
    print(f"CHAOS stage={stage} t={time.monotonic() - _STARTED:.2f}", flush=True)
    if os.environ.get("SITREP_CHAOS_PAUSE_AT") == stage:
        time.sleep(float(os.environ.get("SITREP_CHAOS_PAUSE", "3")))
    if os.environ.get("SITREP_CHAOS_KILL_AT") == stage:
        delay = float(os.environ.get("SITREP_CHAOS_KILL_DELAY", "0"))
        if delay <= 0:
            _kill_now()
        timer = threading.Timer(delay, _kill_now)
        timer.daemon = True
        timer.start()


def _hooked(stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _on_stage(stage)
        return func(*args, **kwargs)

    return wrapper


def install_hooks() -> None:
    """Wrap the stage entry points in this process only (the package itself has no chaos hooks)."""
    from sitrep import fetch, pipeline, store

    pipeline.poll_batch = _hooked("poll", pipeline.poll_batch)  # type: ignore[assignment]
    fetch.Fetcher.iter_many = _hooked("fetch", fetch.Fetcher.iter_many)  # type: ignore[method-assign]
    pipeline.PageStream = _hooked("extract", pipeline.PageStream)  # type: ignore[misc]  # the worker pool starts
    pipeline.build_reports = _hooked("extract", pipeline.build_reports)  # type: ignore[assignment]
    store.stage_reports = _hooked("stage", store.stage_reports)  # type: ignore[assignment]
    store._assign_stories = _hooked("load", store._assign_stories)  # type: ignore[attr-defined]


def run(mode: str) -> dict[str, int]:
    """One ingestion run, batch by batch, step by step, as the DAG's mapped tasks would."""
    from sitrep import pipeline
    from sitrep.settings import Settings

    settings = Settings.from_env()
    totals: dict[str, int] = {}
    batches = pipeline.plan(settings, due_only=mode != "all")
    print(f"CHAOS planned={len(batches)}", flush=True)
    for step in (pipeline.poll_batch, pipeline.collect_batch, pipeline.load_batch):
        for batch in batches:
            for key, value in step(settings, batch).items():
                totals[key] = totals.get(key, 0) + int(value)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.child", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("all", "due"), default="all")
    args = parser.parse_args(argv)
    install_hooks()
    totals = run(args.mode)
    print(f"CHAOS done t={time.monotonic() - _STARTED:.2f} {totals}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
