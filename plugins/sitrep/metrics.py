"""Per-stage timings of a task, recorded in Postgres (``task_stage_log``) for benches and operators, and
how far an ingestion run has got (``progress``)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import psycopg

__all__ = ["PAGE_SECONDS", "Progress", "Stages", "page_step", "progress"]

#: CPU seconds of each step of the page being built in this process (extract, enrich, dedup); an
#: extraction worker clears it before a page and sends it back with the result.
PAGE_SECONDS: dict[str, float] = {}


@contextmanager
def page_step(name: str) -> Iterator[None]:
    """Add this block's CPU time (process time: the worker runs one page at a time) to PAGE_SECONDS."""
    started = time.process_time()
    try:
        yield
    finally:
        PAGE_SECONDS[name] = PAGE_SECONDS.get(name, 0.0) + time.process_time() - started


class Stages:
    """Accumulates seconds and item counts per stage name (thread-safe: fetch threads add to it).

    Usage::

        stages = Stages()
        with stages.time("fetch", items=len(urls)):
            ...
        stages.record(conn, run_id=run_id, task="collect", source_ids=ids)
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.items: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._started = time.perf_counter()

    @contextmanager
    def time(self, stage: str, items: int = 0) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started, items)

    def add(self, stage: str, seconds: float, items: int = 0) -> None:
        """Seconds measured elsewhere (CPU seconds from a worker or a fetch thread)."""
        with self._lock:
            self.seconds[stage] += seconds
            self.items[stage] += items

    def record(self, conn: psycopg.Connection, *, run_id: str | None, task: str, source_ids: Sequence[int]) -> None:
        """Write one row per stage, and a ``task`` row with the task's wall time since this object was
        made (stages overlap: fetch threads, workers and the stager run at once, so they need not sum
        to it). In its own small transaction: timings never block the work."""
        if not self.seconds:
            return
        with self._lock:
            rows = [(stage, secs, self.items[stage]) for stage, secs in self.seconds.items()]
        rows.append(("task", time.perf_counter() - self._started, 0))
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO task_stage_log (run_id, task, stage, source_ids, seconds, items, recorded_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())",  # now() is the transaction's start
                [(run_id, task, stage, list(source_ids), secs, items) for stage, secs, items in rows],
            )


class Progress(NamedTuple):
    reports: int
    entries: int
    pending: int  #: entries not loaded yet (nor failed)
    staged: int  #: of those, pages collected and staged, waiting for the load


def progress(conn: psycopg.Connection) -> Progress:
    """How far ingestion has got, as another connection sees it: the collect commits a chunk at a time."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM entries),"
        " (SELECT count(*) FROM entries WHERE status = 'pending'), (SELECT count(*) FROM staged_reports)"
    ).fetchone()
    conn.commit()
    return Progress(*(int(n) for n in row))  # type: ignore[union-attr]
