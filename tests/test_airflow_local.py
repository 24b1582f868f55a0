"""`sitrep airflow`: the real Airflow 3 on loopback (api-server, scheduler, dag-processor, triggerer),
driven the way a user or a monitoring probe would: health endpoint, JWT login, REST API v2."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest
from sitrep import sources
from sitrep.commands import airflow as local_airflow

from tests.conftest import make_settings
from tests.pages import Item, article_html, paragraphs, rss

#: Bounds for a 2-core machine: start-up includes `airflow db migrate` on a fresh database.
START_TIMEOUT = 240.0
PARSE_TIMEOUT = 120.0
RUN_TIMEOUT = 300.0


def _publish(site, n: int = 2) -> str:
    items = []
    for i in range(n):
        path = f"/2024/05/0{i + 1}/front-{i}.html"
        site.add(path, article_html(f"Artillery strikes near Kupiansk, day {i}", paragraphs(f"front {i}")))
        items.append(Item(title=f"Artillery strikes near Kupiansk, day {i}", link=site.url(path), guid=f"front-{i}"))
    return site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})


def _wait(what: str, timeout: float, probe):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None:
            return last
        time.sleep(1.0)
    pytest.fail(f"{what} not reached within {timeout:.0f}s")


def test_airflow_serves_the_ui_runs_a_triggered_ingestion_and_stops(site, conn, settings, tmp_path):
    feed_url = _publish(site)
    sources.add_feeds(conn, [sources.FeedSpec(url=feed_url, name="Front Line Daily")])
    conn.commit()
    home = make_settings(settings, home=tmp_path / "sitrep-home")
    env = {
        "SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_RETRIES": "1",
        # Only the run this test triggers: the scheduler creates no runs of its own.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
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

        with httpx.Client(base_url=state.url, timeout=30) as api:
            # The login printed by `make airflow` is the one that works; a wrong one is refused.
            assert api.post("/auth/token", json={"username": state.username, "password": "wrong"}).status_code == 401
            token = api.post("/auth/token", json={"username": state.username, "password": state.password})
            assert token.status_code in (200, 201), token.text
            api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

            def parsed():  # type: ignore[no-untyped-def]
                response = api.get("/api/v2/dags/sitrep_ingest")
                return response.json() if response.status_code == 200 else None

            dag = _wait("sitrep_ingest parsed by the dag-processor", PARSE_TIMEOUT, parsed)
            assert dag["is_paused"] is False
            assert dag["timetable_summary"]

            created = api.post("/api/v2/dags/sitrep_ingest/dagRuns",
                               json={"logical_date": None, "conf": {"mode": "all"}})
            assert created.status_code == 200, created.text
            run_id = created.json()["dag_run_id"]

            def finished():  # type: ignore[no-untyped-def]
                run = api.get(f"/api/v2/dags/sitrep_ingest/dagRuns/{run_id}").json()
                return run if run["state"] in ("success", "failed") else None

            run = _wait(f"the end of DAG run {run_id}", RUN_TIMEOUT, finished)
            tasks = api.get(f"/api/v2/dags/sitrep_ingest/dagRuns/{run_id}/taskInstances").json()
            states = sorted({(t["task_id"], t["state"]) for t in tasks["task_instances"]})
            assert run["state"] == "success", states
            assert states == [("collect", "success"), ("load", "success"), ("plan", "success"), ("poll", "success")]

        titles = [row[0] for row in conn.execute("SELECT title FROM reports_v1 ORDER BY url").fetchall()]
        assert titles == ["Artillery strikes near Kupiansk, day 0", "Artillery strikes near Kupiansk, day 1"]
    finally:
        stopped = local_airflow.stop(home)
    assert sorted(stopped) == sorted(local_airflow.COMPONENTS)
    assert state is not None and not any(state.alive().values())
    leftovers = [p for p in psutil.process_iter(["pid"]) if p.info["pid"] in state.pids.values()]
    assert leftovers == []
    assert local_airflow.status(home) == (None, None)
