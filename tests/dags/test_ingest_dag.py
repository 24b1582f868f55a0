"""The ingestion DAG, run for real through dag.test() against Postgres and a loopback site."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import psycopg
from rich.console import Console

from sitrep import cli, sources
from sitrep.runner import airflow_env
from tests.conftest import Site
from tests.pages import Item, article_html, paragraphs, respond, rss
from tests.reports import wait_until_staged
from tests.texts import article


def test_every_dag_file_imports_without_errors(settings):
    env = airflow_env(settings, str(settings.database_url))
    code = (
        "from airflow.dag_processing.dagbag import DagBag;"
        "import os;"
        "bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER']);"
        "print('ERRORS', dict(bag.import_errors));"
        "print('DAGS', sorted(bag.dag_ids))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "ERRORS {}" in out
    assert "sitrep_ingest" in out


def _publish(site, n: int = 3, prefix: str = "story"):
    items = []
    for i in range(n):
        path = f"/2024/03/1{i}/{prefix}-{i}.html"
        site.add(path, article_html(f"Shelling hits district {i} of Kharkiv", paragraphs(f"{prefix} {i}")))
        items.append(Item(title=f"Shelling hits district {i}", link=site.url(path), guid=f"{prefix}-{i}"))
    return items


def test_dag_loads_feed_entries_once_and_a_second_run_adds_nothing(site, conn, settings, run_dag):
    items = _publish(site, 3)
    # The same article announced a second time under a tracking-parameter URL: one report.
    items.append(Item(title="Shelling hits district 0 (again)", link=items[0].link + "?utm_source=rss&fbclid=x",
                      guid="story-0-tracked"))
    site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Test Gazette")])

    assert run_dag("sitrep_ingest", {"mode": "all"})

    rows = conn.execute(
        "SELECT title, url, published_at::date::text, published_at_source, word_count, extraction_method"
        " FROM reports_v1 ORDER BY url"
    ).fetchall()
    assert [r[0] for r in rows] == [f"Shelling hits district {i} of Kharkiv" for i in range(3)]
    assert all(r[4] >= 100 and r[5].startswith("trafilatura") for r in rows)
    # No date on the pages: the feed's date comes before the one in the URL.
    assert [(r[2], r[3]) for r in rows] == [("2024-03-12", "feed")] * 3
    statuses = dict(conn.execute("SELECT entry_key, status FROM entries").fetchall())
    assert statuses == {"story-0": "loaded", "story-1": "loaded", "story-2": "loaded", "story-0-tracked": "duplicate"}
    tracked = conn.execute("SELECT count(*) FROM report_urls WHERE url LIKE '%%utm_source%%'").fetchone()[0]
    assert tracked == 1
    stages = {r[0] for r in conn.execute("SELECT DISTINCT stage FROM task_stage_log WHERE run_id IS NOT NULL")}
    assert {"poll", "fetch", "extract", "enrich", "dedup", "stage", "load", "task"} <= stages
    seq_before = conn.execute("SELECT max(ingest_seq) FROM reports").fetchone()[0]
    conn.commit()

    assert run_dag("sitrep_ingest", {"mode": "all"})
    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == 3
    assert conn.execute("SELECT max(ingest_seq) FROM reports").fetchone()[0] == seq_before
    assert site.count("/2024/03/10/story-0.html") == 1  # fetched once for both URLs, never again


def test_a_broken_feed_does_not_stop_the_others(site, conn, settings, run_dag):
    items = _publish(site, 2, prefix="good")
    site.add("/good.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    site.add("/broken.xml", "<html><body>Not a feed at all</body></html>")
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/good.xml"), name="good"),
                             sources.FeedSpec(url=site.url("/broken.xml"), name="broken"),
                             sources.FeedSpec(url=site.url("/missing.xml"), name="missing")])

    assert run_dag("sitrep_ingest", {"mode": "all"})

    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == 2
    health = dict(conn.execute("SELECT name, last_error IS NOT NULL FROM sources").fetchall())
    assert health == {"good": False, "broken": True, "missing": True}


def test_copies_join_the_original_s_story_only_within_the_dedup_window(site, conn, settings, run_dag):
    """SITREP_DEDUP_WINDOW_DAYS reaches the DAG's loader: a copy published 12 hours after the wire's
    original joins its story, one published 4 days after it (outside a 2-day window) starts its own."""
    original = article(40)
    pages = {  # path: (paragraphs, published)
        "/wire/2024/03/10/strike.html": (original, "2024-03-10T08:00:00+00:00"),
        "/copier/2024/03/10/strike.html": (original[:-1], "2024-03-10T20:00:00+00:00"),
        "/copier/2024/03/14/strike-again.html": (original[1:], "2024-03-14T08:00:00+00:00"),
    }
    for path, (body, published) in pages.items():
        site.add(path, article_html("Strike on the port of Odesa", body, date=published))
    for feed in ("wire", "copier"):
        items = [Item(title="Strike on the port of Odesa", link=site.url(path), guid=path, date=None)
                 for path in pages if path.startswith(f"/{feed}/")]
        site.add(f"/{feed}.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url(f"/{feed}.xml"), name=feed) for feed in ("wire", "copier")])

    assert run_dag("sitrep_ingest", {"mode": "all"}, extra_env={"SITREP_DEDUP_WINDOW_DAYS": "2"})

    rows = {url.removeprefix(site.base): (report_id, story_id, duplicate_of) for url, report_id, story_id, duplicate_of
            in conn.execute("SELECT url, report_id, story_id, duplicate_of FROM reports").fetchall()}
    wire, copy, late = (rows[path] for path in pages)
    assert copy[1] == wire[1] and copy[2] == wire[0]
    assert late[1] != wire[1] and late[2] is None


def test_sitrep_ingest_shows_pages_collected_before_the_batch_loads(site, conn, settings, db_url, monkeypatch):
    """The status line of `sitrep ingest` moves while pages are fetched and extracted: the collect commits
    what it staged a chunk at a time (the last page answers only after the CLI has had time to see it)."""
    items = _publish(site, 5, prefix="early")
    staged_first = threading.Event()  # the early pages were committed while the late one was still on the wire

    def late_page(handler: BaseHTTPRequestHandler) -> None:
        if wait_until_staged(db_url, 1, seconds=10):  # under the DAG's read timeout (20 s)
            staged_first.set()
            time.sleep(1.5)  # three of the status line's counts
        respond(handler, article_html("Shelling hits the late district", paragraphs("late")).encode())

    items.append(Item(title="Shelling hits the late district", link=site.url("/2024/03/19/late.html"), guid="late"))
    site.add("/2024/03/19/late.html", handler=late_page)
    site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Test Gazette")])
    conn.commit()
    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=True, width=200))

    env = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_PER_HOST_CONCURRENCY": "8"}
    assert cli.run_ingest(settings, due_only=False, extra_env=env) == 0

    assert staged_first.is_set()  # staged a chunk at a time, not all at the end of the collect
    collected = [int(n) for n in re.findall(r"pending \((\d+) collected\)", screen.getvalue())]
    assert max(collected) >= 1, collected  # and the status line showed it
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 6


def test_a_failing_batch_holds_up_no_other_batchs_load(site, conn, settings, run_dag, db_url):
    # Two feeds, one batch each. The first batch's poll fails for real (its source row held by another
    # session past the statement timeout): its collect and load never run, the other batch loads all
    # the same (one expand() feeding the next made every load wait for every poll and collect).
    other = Site()  # another host: batches never split a host's feeds
    try:
        site.add("/a.xml", rss(_publish(site, 2, prefix="held")), headers={"Content-Type": "application/rss+xml"})
        other.add("/b.xml", rss(_publish(other, 2, prefix="free")), headers={"Content-Type": "application/rss+xml"})
        sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/a.xml"), name="Held"),
                                 sources.FeedSpec(url=other.url("/b.xml"), name="Free")])
        conn.commit()
        env = {"SITREP_BATCH_SOURCES": "1", "SITREP_TASK_RETRIES": "0", "SITREP_STATEMENT_TIMEOUT_MS": "3000"}
        with psycopg.connect(db_url) as holder:
            holder.execute("SELECT 1 FROM sources WHERE name = 'Held' FOR UPDATE")
            assert not run_dag("sitrep_ingest", {"mode": "all"}, extra_env=env)  # the held batch failed
        loaded = conn.execute("SELECT s.name, count(*) FROM reports r JOIN sources s USING (source_id) GROUP BY 1")
        assert dict(loaded.fetchall()) == {"Free": 2}
        conn.commit()

        assert run_dag("sitrep_ingest", {"mode": "all"}, extra_env=env)  # released: the next run loads it
        loaded = conn.execute("SELECT s.name, count(*) FROM reports r JOIN sources s USING (source_id) GROUP BY 1")
        assert dict(loaded.fetchall()) == {"Free": 2, "Held": 2}
    finally:
        other.close()
