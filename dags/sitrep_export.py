"""
### sitrep warehouse export: reports_v1 -> Parquet, exactly once

**Schedule:** on the `sitrep_reports` asset, so it runs as soon as the ingestion DAG's load task
lands reports (`max_active_runs=1`, though a second run would only wait for the first: exporters of
one path serialise on an advisory lock).

**What it does:** exports every report of `reports_v1` past this destination's `ingest_seq`
watermark to Parquet files under `SITREP_EXPORT_PATH` (default `$SITREP_HOME/export`, `.sitrep/export`; any fsspec URL such as
`s3://bucket/sitrep` works with its driver installed), partitioned `ingest_date=YYYY-MM-DD/`, named by
their ingest_seq range, written to a temporary name and renamed. Each step records a manifest
(`export_manifests`, and `_manifests/*.json` beside the data: files, rows, seq range, sha256) and
moves the watermark in the same transaction. A report whose text changed comes again with its new
`revision`: MERGE on `report_id` keeping the highest `revision`.

**Settings:** `SITREP_EXPORT_PATH`, `SITREP_EXPORT_BATCH_ROWS` (rows per step, default 20000), the
database from `SITREP_DATABASE_URL` or the Airflow connection `sitrep_postgres`.

**When it fails:** nothing is lost or doubled: a step interrupted after writing files is redone with
the same range and file names by the retry or the next run. Read the task log (a path it cannot
write, missing credentials for an object store, the database), fix it, and clear the task.
`sitrep export` runs the same step by hand; `sitrep export --since SEQ` backfills into a folder of its own.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from sitrep.assets import REPORTS


@dag(
    dag_id="sitrep_export",
    schedule=[REPORTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": 2.0},
    doc_md=__doc__,
    tags=["sitrep", "downstream"],
)
def sitrep_export() -> None:
    @task
    def export() -> dict[str, int]:
        """Export past the watermark until caught up; returns counts (never data) for XCom."""
        from sitrep import export
        from sitrep.settings import Settings

        return export.export_step(Settings.from_env())

    export()


sitrep_export()
