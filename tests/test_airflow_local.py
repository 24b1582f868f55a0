"""`sitrep airflow`: the real Airflow 3 on loopback (api-server, scheduler, dag-processor, triggerer),
driven the way a user or a monitoring probe would: health endpoint, JWT login, REST API v2. One
triggered ingestion run lands reports, emits the asset, and the downstream DAGs run on it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from sitrep import sources
from sitrep.commands import airflow as local_airflow
from sitrep.errors import SitrepError
from sitrep.settings import PROJECT_ROOT
from sitrep.webhooks import WebhookReceiver
from tests.conftest import make_settings
from tests.pages import Item, article_html, paragraphs, rss

#: Bounds for a 2-core machine: start-up includes `airflow db migrate` on a fresh database.
START_TIMEOUT = 240.0
PARSE_TIMEOUT = 120.0
RUN_TIMEOUT = 300.0
DAG_IDS = sorted(p.stem for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
DOWNSTREAM = [d for d in DAG_IDS if d != "sitrep_ingest"]


@pytest.mark.parametrize(("sitrep_url", "expected"), [
    ("postgresql://postgres@127.0.0.1:5432/sitrep", "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"),
    ("postgres://u:pw@db:5432/t_abc", "postgresql+psycopg2://u:pw@db:5432/t_abc_airflow"),
])
def test_the_metadata_database_sits_beside_sitreps(sitrep_url, expected, monkeypatch):
    monkeypatch.delenv("SITREP_AIRFLOW_DB_URL", raising=False)
    assert local_airflow.airflow_db_url(sitrep_url) == expected
    monkeypatch.setenv("SITREP_AIRFLOW_DB_URL", "postgresql+psycopg2://meta@elsewhere/airflow")
    assert local_airflow.airflow_db_url(sitrep_url) == "postgresql+psycopg2://meta@elsewhere/airflow"


def test_components_share_loopback_secrets_from_private_files_and_the_users_settings_win(settings, tmp_path,
                                                                                       monkeypatch):
    home = make_settings(settings, home=tmp_path)
    monkeypatch.delenv("SITREP_AIRFLOW_DB_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "3")
    first = local_airflow.component_env(home, "postgresql://postgres@127.0.0.1:5432/sitrep", 8123)
    again = local_airflow.component_env(home, "postgresql://postgres@127.0.0.1:5432/sitrep", 8123)
    assert first["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert first["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert first["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert first["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert first["AIRFLOW__API_AUTH__JWT_SECRET"] == again["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    assert (tmp_path / "airflow" / "secrets.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("port", "message"), [("abc", "is not a port number"), ("70000", "is not a port number"),
                                               ("\u00b2", "is not a port number"),
                                               ("taken", "is taken")])
def test_a_bad_or_taken_port_is_refused_before_anything_starts(port, message, settings, tmp_path, monkeypatch):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("SITREP_AIRFLOW_PORT", str(busy.getsockname()[1]) if port == "taken" else port)
        with pytest.raises(SitrepError, match=message):
            local_airflow.start(make_settings(settings, home=tmp_path))
    assert local_airflow.stop(make_settings(settings, home=tmp_path)) == []
    assert not (tmp_path / "airflow" / "local.json").exists()


def test_a_bad_parallelism_is_refused_in_one_line(settings, monkeypatch):
    # It went to Airflow as given: "abc" failed in Airflow's own config parsing, at every component.
    from sitrep.errors import ConfigError

    monkeypatch.setenv("SITREP_AIRFLOW_PARALLELISM", "abc")
    with pytest.raises(ConfigError, match="SITREP_AIRFLOW_PARALLELISM='abc' is not a number"):
        local_airflow.component_env(settings, "postgresql://u@127.0.0.1:9/x", 8080)


def _publish(site, n: int = 2) -> str:
    items = []
    for i in range(n):
        path = f"/2024/05/0{i + 1}/front-{i}.html"
        site.add(path, article_html(f"Artillery strikes near Kupiansk, day {i}", paragraphs(f"front {i}")))
        items.append(Item(title=f"Artillery strikes near Kupiansk, day {i}", link=site.url(path), guid=f"front-{i}"))
    return site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def _rules(webhook: WebhookReceiver, folder: Path) -> Path:
    """One alert rule whose webhook is on loopback (never anything else)."""
    path = folder / "alert_rules.yaml"
    path.write_text(
        "rules:\n  - name: kupiansk\n    query: Kupiansk\n    min_relevance: 0\n"
        f"    webhooks:\n      - url: {webhook.url('/hooks/kupiansk')}\n"
    )
    return path


def _wait(what: str, timeout: float, probe):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except httpx.TransportError:  # an api-server starved of CPU by the tasks: ask again
            found = None
        if found is not None:
            return found
        time.sleep(1.0)
    pytest.fail(f"{what} not reached within {timeout:.0f}s")


# Bounded by the waits above; the timeout only backs them up (the `finally` still stops Airflow).
@pytest.mark.timeout(1200)
def test_airflow_serves_the_ui_runs_ingestion_and_the_downstream_dags_and_stops(site, webhook, conn, settings,
                                                                               tmp_path):
    feed_url = _publish(site)
    sources.add_feeds(conn, [sources.FeedSpec(url=feed_url, name="Front Line Daily")])
    conn.commit()
    home = make_settings(settings, home=tmp_path / "sitrep-home")
    env = {
        "SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_RETRIES": "1",
        # A schedule that never falls due (29 February, after start_date): only the run this test
        # triggers, and the asset-scheduled runs it causes.
        "SITREP_SCHEDULE": "0 0 29 2 *",
        "SITREP_ALERT_RULES": str(_rules(webhook, tmp_path)),
        "SITREP_EXPORT_PATH": str(tmp_path / "export"),
        "SITREP_AIRFLOW_PARALLELISM": "2",
    }
    state = None
    try:
        state = local_airflow.start(home, extra_env=env, timeout=START_TIMEOUT)
        assert state.url.startswith("http://127.0.0.1:")
        assert set(state.alive()) == set(local_airflow.COMPONENTS) and all(state.alive().values())

        report = local_airflow.health(state.url)
        assert report is not None
        assert {report[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
            "healthy"}

        with httpx.Client(base_url=state.url, timeout=60) as api:
            # The login printed by `make airflow` is the one that works; a wrong one is refused.
            assert api.post("/auth/token", json={"username": state.username, "password": "wrong"}).status_code == 401
            token = api.post("/auth/token", json={"username": state.username, "password": state.password})
            assert token.status_code in (200, 201), token.text
            api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

            def parsed():  # type: ignore[no-untyped-def]
                dags = api.get("/api/v2/dags").json()["dags"]
                found = {d["dag_id"]: d for d in dags}
                return found if set(DAG_IDS) <= set(found) else None

            dags = _wait(f"{DAG_IDS} parsed by the dag-processor", PARSE_TIMEOUT, parsed)
            assert api.get("/api/v2/importErrors").json()["total_entries"] == 0
            for dag_id in DAG_IDS:
                assert dags[dag_id]["is_paused"] is False, dag_id
                details = api.get(f"/api/v2/dags/{dag_id}/details").json()
                assert "fail" in (details["doc_md"] or "").lower(), dag_id  # doc_md says what to do then

            created = api.post("/api/v2/dags/sitrep_ingest/dagRuns",
                               json={"logical_date": None, "conf": {"mode": "all"}})
            assert created.status_code == 200, created.text
            run_id = created.json()["dag_run_id"]

            def finished(dag_id: str, run: str | None = None):  # type: ignore[no-untyped-def]
                def probe():  # type: ignore[no-untyped-def]
                    runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
                    done = [r for r in runs if (run is None or r["dag_run_id"] == run)
                            and r["state"] in ("success", "failed")]
                    return done[0] if done else None
                return probe

            run = _wait(f"the end of DAG run {run_id}", RUN_TIMEOUT, finished("sitrep_ingest", run_id))
            tasks = api.get(f"/api/v2/dags/sitrep_ingest/dagRuns/{run_id}/taskInstances").json()
            states = sorted({(t["task_id"], t["state"]) for t in tasks["task_instances"]})
            assert run["state"] == "success", states
            assert states == [("batch.collect", "success"), ("batch.load", "success"), ("batch.poll", "success"),
                              ("plan", "success")]
            # Each batch's task instances are named by their feed count (the task group's label), not "?".
            labels = {t["rendered_map_index"] for t in tasks["task_instances"] if t["task_id"].startswith("batch.")}
            assert labels and all(re.fullmatch(r"[1-9][0-9]* feeds", str(label)) for label in labels), labels

            events = api.get("/api/v2/assets/events", params={"source_dag_id": "sitrep_ingest"}).json()
            assert events["total_entries"] >= 1
            assert {e["uri"] for e in events["asset_events"]} == {"sitrep://reports/v1"}
            # The asset schedules every downstream DAG; each runs to success.
            for dag_id in DOWNSTREAM:
                downstream = _wait(f"a run of {dag_id} on the asset", RUN_TIMEOUT, finished(dag_id))
                assert downstream["run_type"] == "asset_triggered" and downstream["state"] == "success", dag_id

        titles = [row[0] for row in conn.execute("SELECT title FROM reports_v1 ORDER BY url").fetchall()]
        assert titles == ["Artillery strikes near Kupiansk, day 0", "Artillery strikes near Kupiansk, day 1"]
        if "sitrep_alerts" in DOWNSTREAM:
            # One alert for the story (the two reports are near-duplicates), delivered to its webhook.
            assert [(r.path, r.json["rule"]) for r in webhook.received] == [("/hooks/kupiansk", "kupiansk")]
        if "sitrep_export" in DOWNSTREAM:
            assert list((tmp_path / "export").rglob("*.parquet"))
    finally:
        stopped = local_airflow.stop(home)
    assert sorted(stopped) == sorted(local_airflow.COMPONENTS)
    assert state is not None and not any(state.alive().values())
    leftovers = [p for p in psutil.process_iter(["pid"]) if p.info["pid"] in state.pids.values()]
    assert leftovers == []
    assert local_airflow.status(home) == (None, None)
