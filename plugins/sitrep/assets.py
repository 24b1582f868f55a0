"""The Airflow assets sitrep produces, in one place (DAG files import them from here)."""

from __future__ import annotations

from airflow.sdk import Asset

__all__ = ["REPORTS"]

#: Emitted by the ingestion DAG's load task whenever reports land; downstream DAGs are scheduled on it.
REPORTS = Asset(name="sitrep_reports", uri="sitrep://reports/v1", group="sitrep")
