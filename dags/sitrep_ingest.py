"""
### sitrep ingestion: feeds -> article pages -> clean reports in PostgreSQL

Every run takes the **due** feeds (each source has its own `next_poll_at`; `mode=all` polls every
enabled feed, as `sitrep ingest` does), shards them into batches by host and, per batch (a mapped task
group: a batch's load waits for its own collect only, so a slow or failing batch holds up no other
batch's reports):

1. **poll**: conditional GET of each feed (ETag / Last-Modified), parsed with feedparser; entries not
   seen before are recorded.
2. **collect**: the pending entries' pages are fetched politely (per-host limits, size caps, SSRF
   guard), extracted with trafilatura in a process pool, normalized and staged in Postgres.
3. **load**: staged reports are merged into `reports` in one transaction (exact dedup by URL,
   canonical URL and content hash; near-duplicates, syndicated copies, grouped into stories by
   MinHash-LSH). Emits the `sitrep_reports` asset for the downstream DAGs.

Every task is idempotent: a retry (or a run killed half-way) leaves neither a gap nor a duplicate.
A failing feed or page is recorded (`sitrep feeds list`, `poll_log`, `entries.error`) and never fails
the run; a failing task means the database or the machine is in trouble: check the task log, fix,
and clear the task.

Settings: environment variables `SITREP_*` (README), database from `SITREP_DATABASE_URL` or
the Airflow connection `sitrep_postgres`. Schedule: `SITREP_SCHEDULE` (default every 10 minutes); task retries:
`SITREP_TASK_RETRIES` (default 3, 20 s apart, doubling).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task, task_group

from sitrep.assets import REPORTS
from sitrep.settings import ingest_schedule, task_retries

BATCH_LABEL = "{{ batch_feeds | default('?') }} feeds"


@dag(
    dag_id="sitrep_ingest",
    schedule=ingest_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"mode": Param("due", enum=["due", "all"], description="poll only due feeds, or every enabled feed")},
    default_args={"retries": task_retries(), "retry_delay": timedelta(seconds=20),
                  "retry_exponential_backoff": 2.0},
    doc_md=__doc__,
    tags=["sitrep"],
)
def sitrep_ingest() -> None:
    @task
    def plan(params: dict[str, Any] | None = None) -> list[list[int]]:
        """Batches of source ids, sharded by host."""
        from sitrep import pipeline
        from sitrep.settings import Settings

        due_only = (params or {}).get("mode", "due") != "all"
        return pipeline.plan(Settings.from_env(), due_only=due_only)

    def label(source_ids: list[int]) -> None:
        """Name the batch's task instances in the UI ("25 feeds") instead of by map index."""
        get_current_context()["batch_feeds"] = len(source_ids)  # type: ignore[typeddict-unknown-key]

    @task(map_index_template=BATCH_LABEL)
    def poll(source_ids: list[int], run_id: str | None = None) -> list[int]:
        from sitrep import pipeline
        from sitrep.settings import Settings

        label(source_ids)
        print(pipeline.poll_batch(Settings.from_env(), source_ids, run_id=run_id))
        return source_ids

    @task(map_index_template=BATCH_LABEL)
    def collect(source_ids: list[int], run_id: str | None = None) -> list[int]:
        from sitrep import pipeline
        from sitrep.settings import Settings

        label(source_ids)
        print(pipeline.collect_batch(Settings.from_env(), source_ids, run_id=run_id))
        return source_ids

    @task(outlets=[REPORTS], map_index_template=BATCH_LABEL)
    def load(source_ids: list[int], run_id: str | None = None) -> dict[str, int]:
        from sitrep import pipeline
        from sitrep.settings import Settings

        label(source_ids)
        return pipeline.load_batch(Settings.from_env(), source_ids, run_id=run_id)

    @task_group
    def batch(source_ids: list[int]) -> None:
        """One batch of feeds: poll, collect, load, each instance waiting only for its own batch's."""
        load(collect(poll(source_ids)))  # type: ignore[arg-type]  # TaskFlow passes XComArgs for values

    batch.expand(source_ids=plan())


sitrep_ingest()
