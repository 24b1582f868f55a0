"""Per-stage timings of a task, recorded in Postgres (``task_stage_log``) for benches and operators."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

__all__ = ["Stages"]


class Stages:
    """Accumulates wall-clock seconds and item counts per stage name.

    Usage::

        stages = Stages()
        with stages.time("fetch", items=len(urls)):
            ...
        stages.record(conn, run_id=run_id, task="collect", source_ids=ids)
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.items: dict[str, int] = defaultdict(int)

    @contextmanager
    def time(self, stage: str, items: int = 0) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started
            self.items[stage] += items

    def record(self, conn: psycopg.Connection, *, run_id: str | None, task: str, source_ids: Sequence[int]) -> None:
        """Write one row per stage (in its own small transaction: timings never block the work)."""
        if not self.seconds:
            return
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO task_stage_log (run_id, task, stage, source_ids, seconds, items)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [(run_id, task, stage, list(source_ids), secs, self.items[stage]) for stage, secs in self.seconds.items()],
            )
