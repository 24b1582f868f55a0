"""
### sitrep alerts: rules on new reports -> outbox -> signed webhooks

**Schedule:** on the `sitrep_reports` asset, so alerts go out as soon as the ingestion DAG's load
task lands reports.

**What it does:**
1. **sync_rules**: reads the rules file (`SITREP_ALERT_RULES`, default `seeds/alert_rules.yaml`) into
   `alert_rules`; a rule removed from the file is disabled.
2. **evaluate**: matches every enabled rule on the reports past the `alerts` watermark (ingest_seq):
   full text, places (name, geonames id, radius), actors, event types, sources, language, relevance.
   One alert per rule per story (a syndicated copy only adds its report id); the alerts, their
   deliveries and the watermark commit together, and each new alert is announced by
   `NOTIFY sitrep_alerts` (JSON payload) for live listeners.
3. **deliver**: POSTs each pending delivery (JSON or Slack payload, `X-Sitrep-Signature` HMAC when the
   webhook names a `secret_env`, `X-Sitrep-Delivery` to drop repeats), retrying with exponential
   backoff; after `SITREP_DELIVERY_ATTEMPTS` it goes to `alert_dead_letters` with its last error.

**Settings:** `SITREP_ALERT_RULES`, `SITREP_RELEVANCE_THRESHOLD` (default min_relevance, 0.5),
`SITREP_DELIVERY_ATTEMPTS` (5), `SITREP_DELIVERY_BACKOFF` (2 s, doubling), `SITREP_DELIVERY_TIMEOUT` (10 s),
`SITREP_DELIVERY_BUDGET` (120 s per run; what is left waits for the next run), the secrets named by the
rules (e.g. `SITREP_WEBHOOK_SECRET`), and `SITREP_ALLOW_PRIVATE_HOSTS` (webhooks on private addresses
are refused unless it is on). The database from `SITREP_DATABASE_URL` or the Airflow connection `sitrep_postgres`.

**When it fails:** a bad rules file fails `sync_rules` with the rule and the fix: correct it and clear
the task. A failing webhook never fails the run: see `sitrep alerts list --dead`, fix the receiver (or
its URL in the rules file: a replay goes to the rule's webhook as now written, when the command reads
that file: run it with `SITREP_ALERT_RULES` set to the DAG's rules file, or after the next run of this
DAG has synced them), then `sitrep alerts retry --all`. Re-running any task is safe: nothing alerts twice.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from sitrep.assets import REPORTS


@dag(
    dag_id="sitrep_alerts",
    schedule=[REPORTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": 2.0},
    doc_md=__doc__,
    tags=["sitrep", "downstream"],
)
def sitrep_alerts() -> None:
    @task
    def sync_rules() -> dict[str, int]:
        from sitrep import alerts
        from sitrep.settings import Settings

        return alerts.sync_step(Settings.from_env())

    @task
    def evaluate() -> dict[str, int]:
        from sitrep import alerts
        from sitrep.settings import Settings

        return alerts.evaluate_step(Settings.from_env())

    @task
    def deliver() -> dict[str, int]:
        from sitrep import alerts
        from sitrep.settings import Settings

        return alerts.deliver_step(Settings.from_env())

    sync_rules() >> evaluate() >> deliver()


sitrep_alerts()
