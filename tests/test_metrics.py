"""Stage timings land in task_stage_log, one row per stage, for benches and operators."""

from __future__ import annotations

import time

from sitrep.metrics import Stages


def test_stages_accumulate_and_record_one_row_per_stage(conn):
    stages = Stages()
    with stages.time("fetch", items=3):
        time.sleep(0.01)
    with stages.time("fetch", items=2):
        pass
    with stages.time("extract", items=5):
        pass
    stages.add("enrich", 0.25)  # CPU seconds measured in a worker
    stages.add("enrich", 0.5, items=1)
    stages.record(conn, run_id="run-1", task="collect", source_ids=[1, 2])
    rows = conn.execute(
        "SELECT stage, items, seconds > 0, source_ids FROM task_stage_log WHERE run_id = 'run-1' ORDER BY stage"
    ).fetchall()
    assert rows == [("enrich", 1, True, [1, 2]), ("extract", 5, True, [1, 2]), ("fetch", 5, True, [1, 2]),
                    ("task", 0, True, [1, 2])]
    seconds = dict(conn.execute("SELECT stage, seconds FROM task_stage_log WHERE run_id = 'run-1'").fetchall())
    assert seconds["enrich"] == 0.75
    assert seconds["task"] >= seconds["fetch"] >= 0.01  # the task's wall time covers its stages


def test_nothing_timed_records_nothing(conn):
    Stages().record(conn, run_id="run-2", task="load", source_ids=[])
    assert conn.execute("SELECT count(*) FROM task_stage_log").fetchone()[0] == 0
