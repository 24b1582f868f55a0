"""The pipeline runs as sitrep_loader, not as the database's owner: every DAG, through dag.test(), with
the loader's own credentials (docker-compose.yml gives the workers these, the owner only to migrations)."""

from __future__ import annotations

from dataclasses import replace

import pyarrow.dataset as ds

from sitrep import roles, runner, sources
from sitrep.webhooks import WebhookReceiver
from tests.dags.test_ingest_dag import _publish
from tests.pages import rss
from tests.test_roles import _as

_ENV = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_RETRIES": "1"}


def test_every_dag_runs_as_the_loader_role(site, conn, settings, db_url, tmp_path):
    loader = replace(settings, database_url=_as(db_url, roles.LOADER))
    site.add("/rss.xml", rss(_publish(site, 3)), headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Test Gazette")])
    conn.commit()
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: shelling\n    query: shelling\n    min_relevance: 0\n"
                     "    webhooks: ['${SITREP_ALERT_WEBHOOK_URL}/hooks/all']\n")

    def run(dag_id: str, conf: dict | None = None, **env: str) -> None:
        dag_run = runner.start_dag(loader, str(loader.database_url), dag_id, conf, {**_ENV, **env})
        assert dag_run.wait(300), dag_run.tail(60)

    with WebhookReceiver() as receiver:
        run("sitrep_ingest", {"mode": "all"})
        run("sitrep_export", SITREP_EXPORT_PATH=str(tmp_path / "warehouse"))
        run("sitrep_alerts", SITREP_ALERT_RULES=str(rules), SITREP_ALERT_WEBHOOK_URL=receiver.base_url)
        delivered = receiver.delivered("/hooks/all")

    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == 3
    assert ds.dataset(tmp_path / "warehouse", format="parquet", partitioning="hive").count_rows() == 3
    assert len(delivered) == 1 and delivered[0].json["report_ids"] == [1, 2, 3]  # one story: one alert


    owners = {row[0] for row in conn.execute(
        "SELECT DISTINCT r.rolname FROM reports JOIN pg_class c ON c.relname = 'reports' JOIN pg_roles r ON r.oid = c.relowner")}
    assert roles.LOADER not in owners  # it wrote every row without owning a table
