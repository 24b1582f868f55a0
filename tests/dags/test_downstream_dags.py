"""The downstream DAGs, run for real through dag.test(): the warehouse export and the alerts."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pyarrow.dataset as ds

from sitrep import pipeline, sources
from sitrep.runner import airflow_env
from sitrep.webhooks import WebhookReceiver
from tests.pages import Item, article_html, rss
from tests.reports import load_reports, paragraph

_WORDS = ("convoy shelling ceasefire brigade drone village bridge refinery governor hospital corridor evacuation "
          "negotiators border checkpoint airstrike militia harvest reservoir tribunal monitors artillery substation "
          "railway mayor refugees grain port blockade council envoy sanctions mortar barracks outpost").split()


def _article(seed: int) -> list[str]:
    """Paragraphs no other article resembles, so that no two reports join one story."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=45)).capitalize() + f" (report {seed}, part {p})." for p in range(4)]


def _ingest(site, settings, articles: range) -> None:  # type: ignore[no-untyped-def]
    """One ingestion run through the pipeline's steps (the ingestion DAG has its own tests)."""
    items = []
    for n in articles:
        path = f"/2024/06/{n + 1:02d}/story-{n}.html"
        site.add(path, article_html(f"Story {n} from the front", _article(n), date=f"2024-06-{n + 1:02d}"))
        items.append(Item(title=f"Story {n}", link=site.url(path), guid=f"story-{n}"))
    site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    for batch in pipeline.plan(settings, due_only=False):
        pipeline.poll_batch(settings, batch)
        pipeline.collect_batch(settings, batch)
        pipeline.load_batch(settings, batch)


def test_downstream_dags_are_scheduled_on_the_reports_asset_and_documented(settings):
    env = airflow_env(settings, str(settings.database_url))
    code = (
        "import os, json; from airflow.dag_processing.dagbag import DagBag;"
        "bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']);"
        "print(json.dumps({d: {'errors': list(bag.import_errors), 'schedule': type(bag.dags[d].timetable).__name__,"
        " 'doc': bag.dags[d].doc_md, 'tasks': sorted(bag.dags[d].task_ids)}"
        " for d in ('sitrep_export', 'sitrep_alerts')}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    dags = json.loads(done.stdout.strip().splitlines()[-1])
    assert dags["sitrep_export"]["tasks"] == ["export"]
    assert dags["sitrep_alerts"]["tasks"] == ["deliver", "evaluate", "sync_rules"]
    for dag in dags.values():
        assert dag["errors"] == [] and dag["schedule"] == "AssetTriggeredTimetable"
        assert all(word in dag["doc"] for word in ("Schedule", "Settings", "When it fails"))


def test_export_dag_after_two_ingestion_runs_gives_every_report_once(site, conn, settings, run_dag, tmp_path):
    base = tmp_path / "warehouse"
    env = {"SITREP_EXPORT_PATH": str(base), "SITREP_EXPORT_BATCH_ROWS": "4"}
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Test Gazette")])

    _ingest(site, settings, range(0, 5))
    assert run_dag("sitrep_export", extra_env=env)
    _ingest(site, settings, range(5, 9))
    assert run_dag("sitrep_export", extra_env=env)

    table = ds.dataset(base, format="parquet", partitioning="hive").to_table()
    exported = sorted(zip(table["report_id"].to_pylist(), table["revision"].to_pylist(), strict=True))
    view = conn.execute("SELECT report_id, revision FROM reports_v1 ORDER BY 1").fetchall()
    assert len(view) == 9 and exported == [tuple(r) for r in view]  # the union is the view, no duplicate
    days = sorted({d for d in table["ingest_date"].to_pylist()})
    assert days and all(len(d) == 10 for d in map(str, days))
    manifests = conn.execute(
        "SELECT status, rows FROM export_manifests WHERE target = %s ORDER BY min_seq", (str(base),)
    ).fetchall()
    assert manifests == [("committed", 4), ("committed", 1), ("committed", 4)]  # batches of 4 rows


def test_alerts_dag_delivers_what_the_rules_match_once(conn, settings, run_dag, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: kharkiv-shelling\n"
        "    query: shelling\n"
        "    places: [{name: Kharkiv, radius_km: 100}]\n"
        "    webhooks: [{url: '${SITREP_ALERT_WEBHOOK_URL}/hooks/kharkiv', secret_env: SITREP_WEBHOOK_SECRET}]\n"
        "  - name: broken\n"
        "    query: shelling\n"
        "    webhooks: ['${SITREP_ALERT_WEBHOOK_URL}/hooks/down']\n"
    )
    kharkiv = {"name": "Kharkiv", "geonames_id": 706483, "lat": 49.98, "lon": 36.25}
    load_reports(conn,
                 {"key": "a", "title": "Shelling in Kharkiv", "text": paragraph("Overnight shelling"), "relevance": 0.9,
                  "places": [kharkiv]},
                 {"key": "b", "title": "Harvest news", "text": paragraph("Grain harvest"), "relevance": 0.9,
                  "places": [kharkiv]})
    with WebhookReceiver(secret="dag-secret") as receiver:
        receiver.fail("/hooks/down", always=500)
        env = {"SITREP_ALERT_RULES": str(rules), "SITREP_ALERT_WEBHOOK_URL": receiver.base_url,
               "SITREP_WEBHOOK_SECRET": "dag-secret", "SITREP_DELIVERY_ATTEMPTS": "2",
               "SITREP_DELIVERY_BACKOFF": "0.05"}

        assert run_dag("sitrep_alerts", extra_env=env)

        delivered = receiver.delivered("/hooks/kharkiv")
        assert len(delivered) == 1 and delivered[0].signature_valid is True
        assert delivered[0].json["report"]["title"] == "Shelling in Kharkiv"
        assert len([r for r in receiver.received if r.path == "/hooks/down"]) == 2
    states = dict(conn.execute(
        "SELECT r.name, d.status FROM alert_deliveries d JOIN alerts USING (alert_id) JOIN alert_rules r USING (rule_id)"
    ).fetchall())
    assert states == {"kharkiv-shelling": "delivered", "broken": "dead"}


def test_a_dag_reads_its_database_from_the_airflow_connection_where_airflow_keeps_it(site, conn, settings, run_dag,
                                                                                       tmp_path, db_url):
    # DESIGN: "Inside Airflow the database may also come from the connection sitrep_postgres". Only its
    # environment variable was read, as a URI: a connection kept in Airflow's metadata database or a
    # secrets backend was ignored, and the tasks used an embedded server of their own.
    from urllib.parse import urlsplit

    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Test Gazette")])
    _ingest(site, settings, range(0, 3))
    parts = urlsplit(db_url)
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"sitrep_postgres": {
        "conn_type": "postgres", "host": parts.hostname, "port": parts.port, "login": parts.username,
        "password": parts.password, "schema": parts.path.lstrip("/")}}))
    base = tmp_path / "warehouse"
    env = {"SITREP_DATABASE_URL": "", "SITREP_EXPORT_PATH": str(base),
           "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
           "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections)})}

    assert run_dag("sitrep_export", extra_env=env)

    table = ds.dataset(base, format="parquet", partitioning="hive").to_table()
    assert sorted(table["report_id"].to_pylist()) == [r[0] for r in conn.execute("SELECT report_id FROM reports_v1"
                                                                                   " ORDER BY 1")]
    assert table.num_rows == 3
