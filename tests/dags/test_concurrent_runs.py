"""Two ingestion runs at once against one database (as two Celery workers would run two batches of
the same feeds) load exactly what one run loads: no duplicate, no loss, every entry closed once.

Each run is a real ``dag.test()`` in its own process with its own SITREP_HOME / AIRFLOW_HOME (so their
SQLite metadata databases differ); they share the loopback feeds and sitrep's PostgreSQL database.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler

import psycopg
import pytest

from sitrep import db, runner, sources
from tests.conftest import TEMPLATE, make_settings
from tests.pages import Item, article_html, respond, rss

FEEDS = 3
ARTICLES = 8
SLOW = 3.0
ENV = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_PER_HOST_CONCURRENCY": "8",
       "SITREP_RETRIES": "1", "SITREP_BATCH_SOURCES": "1"}
_WORDS = ("convoy shelling ceasefire brigade drone village bridge refinery governor hospital corridor "
          "evacuation negotiators border checkpoint airstrike militia harvest reservoir tribunal monitors "
          "artillery substation railway mayor refugees grain port blockade council envoy sanctions "
          "mortar barracks outpost frontier pipeline district clinic volunteers journalists").split()


def _text(seed: int) -> list[str]:
    """Paragraphs that no other article resembles (so stories do not depend on load order)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=45)).capitalize() + f" (report {seed}, part {p})." for p in range(4)]


class SecondFetchIsSlow:
    """Serves a page at once to the first run that asks, and SLOW seconds later to the second one.

    This forces the interleaving that matters: the slower run read the entries as pending before the
    faster one loaded them, and stages its copies after that load committed.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    def page(self, body: str):  # type: ignore[no-untyped-def]
        data = body.encode()

        def handle(request: BaseHTTPRequestHandler) -> None:
            with self.lock:
                self.hits[request.path] += 1
                second = self.hits[request.path] > 1
            if second:
                time.sleep(SLOW)
            respond(request, data)

        return handle


def _publish(site, pages: SecondFetchIsSlow) -> list[str]:
    feeds = []
    for f in range(FEEDS):
        items = []
        for a in range(ARTICLES):
            path = f"/desk{f}/2024/06/{a + 1:02d}/story-{f}-{a}.html"
            title = f"Desk {f} dispatch {a}: fighting around the {_WORDS[(f * ARTICLES + a) % len(_WORDS)]}"
            site.add(path, handler=pages.page(article_html(title, _text(f * 100 + a))))
            items.append(Item(title=title, link=site.url(path), guid=f"desk{f}-{a}"))
        # The first story again under a tracking URL: one report, one alias.
        items.append(Item(title=items[0].title, link=items[0].link + "?utm_source=feed", guid=f"desk{f}-tracked"))
        feeds.append(site.add(f"/desk{f}/rss.xml", rss(items, title=f"Desk {f}"),
                              headers={"Content-Type": "application/rss+xml"}))
    return feeds


def _snapshot(url: str) -> dict[str, object]:
    """What a run leaves behind, without the ids and times that legitimately differ."""
    with psycopg.connect(url) as conn:
        def rows(query: str) -> list[tuple]:
            return sorted(conn.execute(query).fetchall())

        return {
            "reports": rows("SELECT s.feed_url, r.url, r.canonical_url, r.title, r.content_sha256, r.revision"
                            " FROM reports r JOIN sources s USING (source_id)"),
            "entries": rows("SELECT s.feed_url, e.entry_key, e.status, r.canonical_url FROM entries e"
                            " JOIN sources s USING (source_id) LEFT JOIN reports r USING (report_id)"),
            "aliases": rows("SELECT u.url, r.canonical_url FROM report_urls u JOIN reports r USING (report_id)"),
            "stories": conn.execute("SELECT count(DISTINCT story_id), count(*) FILTER (WHERE story_id IS NULL)"
                                    " FROM reports").fetchone(),
            "staged": conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0],
            "view": rows("SELECT url, title, duplicate_of IS NULL FROM reports_v1"),
        }


@pytest.mark.timeout(900)  # three DAG runs, two of them at once, on a 2-core machine
def test_two_concurrent_runs_load_what_one_run_loads(site, conn, settings, pg_server, tmp_path, run_dag):
    pages = SecondFetchIsSlow()
    feed_urls = _publish(site, pages)
    specs = [sources.FeedSpec(url=u, name=f"Desk {i}") for i, u in enumerate(feed_urls)]

    # One run alone, in the fixture's database: the reference.
    sources.add_feeds(conn, specs)
    conn.commit()
    assert run_dag("sitrep_ingest", {"mode": "all"}, extra_env=ENV)
    alone = _snapshot(str(settings.database_url))
    pages.hits.clear()

    # Two runs at once, in a second database; their Airflow homes are migrated first so that both
    # start their tasks at the same moment.
    shared = f"t_{uuid.uuid4().hex[:12]}"
    db._create_database(pg_server.url("postgres"), shared, template=TEMPLATE)
    shared_url = pg_server.url(shared)
    with db.connect(shared_url) as other:
        sources.add_feeds(other, specs)
        other.commit()
    homes = [make_settings(settings, home=tmp_path / name) for name in ("worker-a", "worker-b")]
    for home in homes:
        runner.ensure_airflow_db(home, runner.airflow_env(home, shared_url, ENV))
    runs = [runner.start_dag(home, shared_url, "sitrep_ingest", {"mode": "all"}, ENV) for home in homes]
    try:
        outcomes = [run.wait(timeout=300) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.process.kill()
                run.process.wait()
    assert outcomes == [True, True], "\n\n".join(run.tail(40) for run in runs)
    together = _snapshot(shared_url)

    assert len(alone["reports"]) == FEEDS * ARTICLES  # type: ignore[arg-type]
    assert together["staged"] == alone["staged"] == 0
    assert not [e for e in together["entries"] if e[2] == "pending"]  # type: ignore[union-attr]
    for key in ("reports", "aliases", "stories", "view", "entries"):
        assert together[key] == alone[key], key
