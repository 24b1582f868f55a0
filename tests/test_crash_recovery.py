"""The fast versions of the chaos suite (``make chaos`` runs many more trials; tests/chaos/RESULTS.md).

- An ingestion process SIGKILLed inside its load transaction, and during extraction, then retried:
  what it leaves is what one undisturbed run leaves (0 lost, 0 duplicated).
- PostgreSQL (a private embedded server, so the session's is not disturbed) stopped while a run is
  loading: the task fails; the retry, started while the server is still down, gets through on
  db.connect's backoff and completes the load.
- statement_timeout is set on every connection the package opens, and cancels a query that overruns.
- Text, titles and URLs of any length and any Unicode, NUL included, load whole (NUL, which
  PostgreSQL text refuses, is the one thing removed).
"""

from __future__ import annotations

import ast
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from sitrep import db, pipeline, sources, store
from sitrep.normalize import content_hash
from sitrep.records import FeedEntry, Report
from tests.chaos.harness import Cluster, Snapshot, kill_trial, restart_trial
from tests.conftest import TEMPLATE
from tests.pages import Item, article_html, rss

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "sitrep"
_WORDS = ("convoy shelling ceasefire brigade drone village bridge refinery governor hospital corridor evacuation "
          "negotiators border checkpoint airstrike militia harvest reservoir tribunal monitors artillery").split()


def _publish(site, n: int = 4) -> str:
    items = []
    for i in range(n):
        text = [" ".join(_WORDS[(i * 7 + p * 3 + k) % len(_WORDS)] for k in range(40)).capitalize()
                + f" (dispatch {i}, part {p})." for p in range(4)]
        path = f"/2024/06/0{i + 1}/dispatch-{i}.html"
        site.add(path, article_html(f"Dispatch {i}: fighting near the {_WORDS[i]}", text))
        items.append(Item(title=f"Dispatch {i}", link=site.url(path), guid=f"dispatch-{i}"))
    items.append(Item(title="Dispatch 0 again", link=items[0].link + "?utm_source=rss", guid="dispatch-0-tracked"))
    return site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})


def _fresh_db(pg_server: db.EmbeddedPostgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    db._create_database(pg_server.url("postgres"), name, template=TEMPLATE)
    return pg_server.url(name)


def _add_feed(url: str, feed_url: str) -> None:
    with db.connect(url) as conn:
        sources.add_feeds(conn, [sources.FeedSpec(url=feed_url, name="Crash Gazette")])
        conn.commit()


@pytest.fixture
def reference(site, settings, pg_server) -> tuple[str, Snapshot]:
    """The feed, and what one undisturbed run (in-process, step by step) leaves behind."""
    feed_url = _publish(site)
    url = _fresh_db(pg_server)
    _add_feed(url, feed_url)
    run_settings = replace(settings, database_url=url)
    for step in (pipeline.poll_batch, pipeline.collect_batch, pipeline.load_batch):
        for batch in pipeline.plan(run_settings, due_only=False):
            step(run_settings, batch)
    snapshot = Snapshot.take(url)
    assert len(snapshot.reports) == 4 and set(snapshot.entries.values()) == {"loaded", "duplicate"}
    return feed_url, snapshot


@pytest.mark.parametrize("stage", ["load", "extract"])
def test_a_run_killed_mid_batch_and_retried_loses_nothing_and_loads_nothing_twice(
        stage, reference, pg_server, tmp_path):
    feed_url, expected = reference
    url = _fresh_db(pg_server)
    _add_feed(url, feed_url)

    trial = kill_trial(url, tmp_path, expected, stage=stage, delay=0.0, name=stage)

    assert trial.injected, trial.notes  # the first run really died of SIGKILL
    assert (trial.lost, trial.duplicated) == (0, 0), trial.notes
    with psycopg.connect(url) as conn:  # and the retry finished what was killed: nothing left open
        assert conn.execute("SELECT count(*) FROM entries WHERE status = 'pending'").fetchone()[0] == 0


def test_a_database_restart_during_load_fails_the_task_and_the_retry_completes_it(reference, tmp_path):
    feed_url, expected = reference
    cluster = Cluster.start(tmp_path / "pg")  # private: restarting it disturbs no other test
    try:
        url = cluster.fresh()
        _add_feed(url, feed_url)

        trial = restart_trial(cluster, url, tmp_path / "home", expected, down_for=1.0)

        assert trial.injected, trial.notes  # the loading task failed when its server went away
        # The retry started while it was down gets through on db.connect's backoff; on a machine so
        # loaded that the server takes longer to come back, it fails with a clear reason and the next
        # retry completes the load.
        assert all("can't connect to PostgreSQL" in note for note in trial.notes), trial.notes
        assert (trial.lost, trial.duplicated) == (0, 0)
    finally:
        cluster.server.stop()


def test_connect_retries_with_backoff_until_the_server_is_back(tmp_path, caplog):
    cluster = Cluster.start(tmp_path / "pg")
    try:
        url = cluster.fresh()
        cluster.server.stop()
        threading.Timer(1.5, cluster.server.start).start()
        with caplog.at_level("INFO", logger="sitrep.db"), db.connect(url, attempts=6) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert any("retrying in" in r.getMessage() for r in caplog.records)
    finally:
        time.sleep(0.1)
        cluster.server.stop()


def test_statement_timeout_cancels_an_overrunning_query(db_url, settings):
    with db.connect(db_url, statement_timeout_ms=300) as conn, pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(3)")
    with pipeline._connect(replace(settings, statement_timeout_ms=4321)) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "4321ms"


def test_every_connection_the_package_opens_goes_through_db_connect():
    """db.connect sets statement_timeout (and retries); a bare psycopg.connect elsewhere would not."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "db.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "psycopg":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


ODD_TEXTS = {
    "nul": "Ceasefire\x00talks resume\x00 in Doha " * 50,
    "long": "Artillery struck the district again. " * 60_000,  # ~2.2 MB in one report
    "unicode": "Обстріл Харкова — 🇺🇦 الهدنة في غزة 東京 e\u0301\u200d\u202e reversed \U0010fffd " * 200,
}


def test_text_titles_and_urls_of_any_length_and_unicode_load_whole(conn, settings, site):
    source_id = sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/odd.xml"), name="Odd")]) and \
        conn.execute("SELECT source_id FROM sources").fetchone()[0]
    long_path = "/".join(["segment-" + "x" * 50] * 150)  # an ~8 KB URL
    cases = {
        "nul": ("Title with\x00NUL", site.url("/nul\x00.html")),
        "long": ("T" * 100_000, site.url("/" + long_path)),
        "unicode": ("Заголовок 🇺🇦 عنوان \u202e", site.url("/%D0%BA%D0%B8%D1%97%D0%B2.html")),
    }
    sources.record_entries(conn, source_id, [FeedEntry(entry_key=k, link=u, title=t) for k, (t, u) in cases.items()])
    entry_ids = dict(conn.execute("SELECT entry_key, entry_id FROM entries").fetchall())
    now = datetime.now(UTC)
    reports = []
    for key, (title, url) in cases.items():
        text = ODD_TEXTS[key]
        reports.append(Report(
            entry_id=entry_ids[key], source_id=source_id, page_id=None, url=url, canonical_url=url, title=title,
            authors=["A\x00uthor"], published_at=now, published_at_source="article", fetched_at=now, language="en",
            text=text, summary=text[:200], word_count=len(text.split()), content_sha256=content_hash(text),
            extraction_method="test",
        ))
    with conn.transaction():
        store.stage_reports(conn, reports)
    store.load_staged(conn, [source_id])

    loaded = {row[0]: row[1:] for row in conn.execute(
        "SELECT e.entry_key, v.title, v.url, v.text, v.authors FROM reports_v1 v"
        " JOIN entries e ON e.report_id = v.report_id").fetchall()}
    assert sorted(loaded) == sorted(cases)
    for key, (title, url) in cases.items():
        got_title, got_url, got_text, got_authors = loaded[key]
        assert got_title == title.replace("\x00", "")
        assert got_url == url.replace("\x00", "")
        assert got_text == ODD_TEXTS[key].replace("\x00", "")  # whole: same length, same code points
        assert got_authors == ["Author"]
    statuses = {s for (s,) in conn.execute("SELECT status FROM entries").fetchall()}
    assert statuses == {"loaded"}
