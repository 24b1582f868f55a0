"""collect_batch streams: pages are fetched, extracted and staged a chunk per transaction at once.

Real feeds and pages on loopback, a real PostgreSQL; chunks made small so that a few dozen pages make
many of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler

import psycopg
import pytest

from sitrep import fetch, pipeline, sources
from tests.pages import Item, article_html, respond, rss
from tests.reports import wait_until_staged
from tests.texts import article


def _publish(site, n: int, *, tracked: tuple[int, ...] = (), missing: tuple[int, ...] = ()) -> str:
    """A feed of n distinct articles; ``tracked`` ones listed a second time with a tracking parameter,
    ``missing`` ones answer 404."""
    items = []
    for i in range(n):
        path = f"/news/{i}.html"
        if i not in missing:
            site.add(path, article_html(f"Report {i} from the front", article(i)))
        items.append(Item(title=f"Report {i}", link=site.url(path), guid=f"r{i}"))
    items += [Item(title=f"Report {i}", link=site.url(f"/news/{i}.html?utm_source=feed"), guid=f"r{i}-tracked")
              for i in tracked]
    return site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})


def _add(conn, url: str) -> int:
    sources.add_feeds(conn, [sources.FeedSpec(url=url, name="stream")])
    source_id = conn.execute("SELECT source_id FROM sources WHERE feed_url = %s", (url,)).fetchone()[0]
    conn.commit()
    return int(source_id)


def _statuses(conn) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM entries GROUP BY status").fetchall()
    conn.commit()
    return dict(rows)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(pipeline, "STAGE_CHUNK", 4)
    monkeypatch.setattr(pipeline, "_AHEAD", 8)


def test_a_batch_is_staged_a_chunk_per_transaction_with_aliases_and_failures(site, conn, settings, small_chunks):
    sid = _add(conn, _publish(site, 30, tracked=(3, 5), missing=(5,)))
    site.routes["/news/1.html"].headers = {"Content-Type": "application/xhtml+xml; charset=utf-8"}
    pipeline.poll_batch(settings, [sid])

    counts = pipeline.collect_batch(settings, [sid])

    # 32 entries; 30 pages fetched once each (the tracked links follow their leader), one a 404
    assert (counts["pending"], counts["fetched"], counts["staged"], counts["failed"]) == (32, 29, 30, 2)
    assert conn.execute("SELECT count(*) FROM pages").fetchone()[0] == 29
    stored = conn.execute("SELECT url, http_status, content_type FROM pages").fetchall()
    assert {(url.endswith("/news/1.html"), status, ctype) for url, status, ctype in stored} == {
        (True, 200, "application/xhtml+xml"), (False, 200, "text/html")}  # the answer each page came with
    chunks = conn.execute("SELECT count(DISTINCT xmin::text) FROM staged_reports").fetchone()[0]
    assert chunks >= 8  # 29 pages in chunks of at most 4, each committed by itself
    failed = conn.execute("SELECT entry_key, error FROM entries WHERE status = 'failed' ORDER BY entry_key").fetchall()
    assert [key for key, _ in failed] == ["r5", "r5-tracked"]  # the follower shares its leader's fate
    assert all("404" in error for _, error in failed)
    conn.commit()

    pipeline.load_batch(settings, [sid])
    assert _statuses(conn) == {"loaded": 29, "duplicate": 1, "failed": 2}
    assert conn.execute("SELECT count(*), count(DISTINCT entry_id) FROM reports").fetchone() == (29, 29)


def _serve_after(route_body: bytes, before: Callable[[], None]) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(h: BaseHTTPRequestHandler) -> None:
        before()
        respond(h, route_body)

    return handler


def test_each_chunk_is_committed_while_later_pages_are_still_on_the_wire(site, conn, settings, db_url, small_chunks):
    """Staged chunks are the batch's progress: another connection sees them while a later page is still
    being fetched (so a task killed then keeps them, and its retry fetches only the rest)."""
    sid = _add(conn, _publish(site, 24))
    pipeline.poll_batch(settings, [sid])
    seen = threading.Event()

    def wait_until_staged_elsewhere() -> None:
        if wait_until_staged(db_url, 4, seconds=4):  # under the test's read timeout (5 s): before the fix, never
            seen.set()

    site.routes["/news/20.html"].handler = _serve_after(site.routes["/news/20.html"].body, wait_until_staged_elsewhere)

    counts = pipeline.collect_batch(settings, [sid])

    assert seen.is_set(), "no chunk was committed while the batch was still being fetched"
    assert counts["staged"] == 24


def test_the_database_connection_lost_mid_batch_loses_nothing_and_the_retry_does_the_rest(
        site, conn, settings, db_url, small_chunks):
    sid = _add(conn, _publish(site, 24))
    pipeline.poll_batch(settings, [sid])
    mine = conn.info.backend_pid
    once = threading.Lock()

    def cut_every_other_connection() -> None:
        if once.acquire(blocking=False):  # what a database restart does to the collect task's connection
            with psycopg.connect(db_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> ALL(%s)", ([mine, admin.info.backend_pid],))

    site.routes["/news/12.html"].handler = _serve_after(site.routes["/news/12.html"].body, cut_every_other_connection)

    with pytest.raises(psycopg.OperationalError):
        pipeline.collect_batch(settings, [sid])
    staged_before = conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0]
    conn.commit()
    assert staged_before < 24 and _statuses(conn) == {"pending": 24}

    counts = pipeline.collect_batch(settings, [sid])  # the retry: only what was not staged
    assert counts["pending"] == 24 - staged_before and counts["staged"] == 24 - staged_before
    pipeline.load_batch(settings, [sid])
    assert _statuses(conn) == {"loaded": 24}
    assert conn.execute("SELECT count(*), count(DISTINCT entry_id) FROM reports").fetchone() == (24, 24)
    assert conn.execute("SELECT count(*), count(DISTINCT entry_id) FROM pages").fetchone() == (24, 24)


def test_poll_records_each_feed_while_the_later_ones_are_still_being_fetched(site, conn, settings, db_url):
    """A feed that answers late must not hold back the ones before it: their entries are parsed and
    committed while it is still on the wire (the second feed answers only once the first one's entries
    are in the database, as another connection sees them)."""
    first = _publish(site, 5)
    recorded = threading.Event()

    def late_feed(handler: BaseHTTPRequestHandler) -> None:
        with psycopg.connect(db_url) as watcher:
            for _ in range(300):  # up to 30 s: the old code, which parsed nothing before every feed arrived
                if watcher.execute("SELECT count(*) FROM entries").fetchone()[0] == 5:
                    recorded.set()
                    break
                watcher.rollback()
                threading.Event().wait(0.1)
        items = [Item(title="Late report", link=site.url("/news/late.html"), guid="late")]
        respond(handler, rss(items).encode(), content_type="application/rss+xml")

    late = site.add("/late.xml", handler=late_feed)
    ids = [_add(conn, first), _add(conn, late)]

    counts = pipeline.poll_batch(settings, ids)

    assert recorded.is_set(), "the first feed's entries were not committed before the second feed answered"
    assert (counts["feeds"], counts["new"], counts["failed"]) == (2, 6, 0), counts


def test_the_same_page_from_two_sources_is_staged_under_each_entrys_own_source(site, conn, settings):
    # Fetched once (the second link is the first with a tracking parameter), staged for both entries:
    # each under its own source, so that loading that source alone closes it (here the first source is
    # disabled before its load, as the poll does to a feed that keeps failing).
    page = site.add("/news/0.html", article_html("Report 0 from the front", article(0)))
    feeds = [site.add(f"/{name}.xml", rss([Item(title="R0", link=link, guid=f"{name}0")]),
                      headers={"Content-Type": "application/rss+xml"})
             for name, link in (("a", page), ("b", page + "?utm_source=b"))]
    a, b = (_add(conn, url) for url in feeds)
    pipeline.poll_batch(settings, [a, b])
    assert pipeline.collect_batch(settings, [a, b])["staged"] == 2
    staged = conn.execute("SELECT e.source_id, s.source_id FROM staged_reports s JOIN entries e USING (entry_id)")
    assert sorted(staged.fetchall()) == [(a, a), (b, b)]
    conn.execute("UPDATE sources SET enabled = false WHERE source_id = %s", (a,))
    conn.commit()

    pipeline.load_batch(settings, [b])

    rows = conn.execute("SELECT source_id, status FROM entries ORDER BY entry_id").fetchall()
    assert rows == [(a, "pending"), (b, "loaded")]
    assert conn.execute("SELECT source_id FROM reports").fetchall() == [(b,)]


def test_an_unforeseen_error_fetching_one_page_or_feed_fails_that_one_only(site, conn, settings, monkeypatch):
    # No page or feed is known to raise anything but FetchError any more (each one found was mended):
    # a reader that raises stands in for the next one.
    read_body = fetch._read_body

    def raising(raw, *args, **kwargs):
        if "odd" in str(raw.url):
            raise RuntimeError("a case nobody foresaw")
        return read_body(raw, *args, **kwargs)

    monkeypatch.setattr(fetch, "_read_body", raising)
    items = [Item(title=f"Report {i}", link=site.add(f"/news/{i}.html", article_html(f"Report {i}", article(i))),
                  guid=f"r{i}") for i in range(3)]
    items.append(Item(title="Odd", link=site.add("/news/odd.html", article_html("Odd report", article(9))), guid="odd"))
    sid = _add(conn, site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"}))
    odd_sid = _add(conn, site.add("/odd.xml", rss(items), headers={"Content-Type": "application/rss+xml"}))

    polled = pipeline.poll_batch(settings, [sid, odd_sid])
    counts = pipeline.collect_batch(settings, [sid, odd_sid])
    pipeline.load_batch(settings, [sid, odd_sid])

    assert (polled["feeds"], polled["failed"], polled["new"]) == (2, 1, 4)
    [error] = conn.execute("SELECT error FROM poll_log WHERE source_id = %s", (odd_sid,)).fetchone()
    assert "unexpected RuntimeError" in error
    assert (counts["staged"], counts["failed"], counts["retry"]) == (3, 0, 1)
    assert _statuses(conn) == {"loaded": 3, "pending": 1}  # the odd page is tried again next run
    [error] = conn.execute("SELECT error FROM entries WHERE entry_key = 'odd'").fetchone()
    assert "unexpected RuntimeError" in error and "a case nobody foresaw" in error


def test_entries_the_database_refuses_fail_their_feed_only(site, conn, settings, monkeypatch):
    record = sources.record_entries

    def refusing(conn, source_id, entries):
        if any(e.entry_key == "refused" for e in entries):
            raise psycopg.errors.DataError("value out of range")  # no real feed is known to cause one
        return record(conn, source_id, entries)

    monkeypatch.setattr(sources, "record_entries", refusing)
    good = _add(conn, _publish(site, 3))
    bad = _add(conn, site.add("/bad.xml", rss([Item(title="x", link=site.url("/news/0.html"), guid="refused")]),
                              headers={"Content-Type": "application/rss+xml"}))

    counts = pipeline.poll_batch(settings, [bad, good])

    assert (counts["feeds"], counts["failed"], counts["new"]) == (2, 1, 3)
    logged = dict(conn.execute("SELECT source_id, error FROM poll_log").fetchall())
    assert logged[good] is None and "value out of range" in logged[bad]
    assert conn.execute("SELECT body_sha256 FROM sources WHERE source_id = %s", (bad,)).fetchone()[0] is None


def test_a_host_slower_than_the_collect_budget_leaves_the_rest_for_the_next_run(site, conn, settings):
    """A host's Crawl-delay (60 s at most) times its pages could hold a collect for hours, and with one
    run at a time every feed behind it: past SITREP_COLLECT_BUDGET no request starts, and the pages
    not fetched stay pending, with why, for the next run."""
    sid = _add(conn, _publish(site, 6))
    polite = replace(settings, fetch=replace(settings.fetch, per_host_delay=1.0, per_host_concurrency=1,
                                             collect_budget=1.5))
    pipeline.poll_batch(polite, [sid])

    first = pipeline.collect_batch(polite, [sid])

    assert 1 <= first["fetched"] < 6 and first["retry"] == 6 - first["fetched"] and first["failed"] == 0
    deferred = conn.execute("SELECT error FROM entries WHERE status = 'pending' AND error IS NOT NULL").fetchall()
    conn.commit()
    assert len(deferred) == first["retry"] and all("next run" in error for (error,) in deferred)
    for _ in range(3):  # a page left for later counts no attempt: it is never failed for having waited
        pipeline.collect_batch(replace(polite, fetch=replace(polite.fetch, collect_budget=1e-6)), [sid])
    assert conn.execute("SELECT count(*), max(attempts) FROM entries WHERE status = 'pending' AND error IS NOT NULL"
                        ).fetchone() == (first["retry"], 0)
    conn.commit()
    later = pipeline.collect_batch(replace(polite, fetch=replace(polite.fetch, collect_budget=60)), [sid])
    assert later["fetched"] == first["retry"]
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 6


def test_every_warning_about_a_page_names_its_feed_and_url(site, conn, settings, caplog):
    # DESIGN: "logging with the feed and URL in every line about them". The page lines said url= only, so
    # in a task log of 25 feeds nobody could tell whose page failed.
    feed_url = _publish(site, 4, missing=(1,))
    site.add("/news/2.html", b"\x89PNG\r\n", headers={"Content-Type": "image/png"})
    site.add("/news/3.html", "<html><body><p>Video only.</p></body></html>")  # no article text: rejected
    sid = _add(conn, feed_url)
    pipeline.poll_batch(settings, [sid])

    with caplog.at_level("INFO", logger="sitrep"):
        pipeline.collect_batch(settings, [sid])

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for i, why in ((1, "not fetched: HTTP 404"), (2, "not fetched: not an HTML page"), (3, "rejected: no article text")):
        assert any(m.startswith(f"feed=stream url={site.url(f'/news/{i}.html')} {why}") for m in warnings), warnings
    assert len(warnings) == 3  # one line each: the fetcher's and the worker's own lines are INFO


def _summary_row(site, conn, settings, missing: tuple[int, ...], textless: tuple[int, ...], pages: int) -> list[str]:
    """`sitrep ingest`'s summary row for one feed run through poll, collect and load: its cells."""
    from datetime import UTC, datetime

    from rich.console import Console

    from sitrep import cli

    started = datetime.now(UTC)
    sid = _add(conn, _publish(site, pages, missing=missing))
    for i in textless:
        site.add(f"/news/{i}.html", f"<html><body><p>Video {i} only.</p></body></html>")
    for step in (pipeline.poll_batch, pipeline.collect_batch, pipeline.load_batch):
        step(settings, [sid])
    screen = Console(width=300, record=True)
    screen.print(cli.ingest_table(conn, started, title="summary"))
    row = next(line for line in screen.export_text().splitlines() if line.startswith("│ stream"))
    return [cell.strip() for cell in row.strip("│").split("│")]


def test_the_ingest_summary_counts_each_feeds_failed_pages_with_the_commonest_reason(site, conn, settings):
    # A feed whose pages all failed showed its entries, no reports and an empty problem column.
    cells = _summary_row(site, conn, settings, missing=(1, 2, 4), textless=(3,), pages=5)
    assert cells[:6] == ["stream", "200", "5", "5", "1", "4"], cells
    assert cells[6].startswith("pages: HTTP 404"), cells


def test_the_summarys_commonest_reason_counts_reasons_not_their_urls(site, conn, settings):
    # "no article text in '<url>': ..." holds its URL, so each counted once and two 404s outnumbered three.
    cells = _summary_row(site, conn, settings, missing=(0, 1), textless=(2, 3, 4), pages=6)
    assert cells[5] == "5" and cells[6].startswith("pages: no article text in"), cells


def test_a_link_recorded_with_a_password_fails_without_writing_it(site, conn, settings):
    # Recorded before such links were refused at the poll: its failure quoted the link, password and all,
    # into entries.error and the ingest summary.
    sid = _add(conn, _publish(site, 1))
    conn.execute("INSERT INTO entries (source_id, entry_key, link) VALUES (%s, 'old', %s)",
                 (sid, site.url("/news/0.html").replace("http://", "http://someone:secret@")))
    conn.commit()
    pipeline.collect_batch(settings, [sid])
    (error,) = conn.execute("SELECT error FROM entries WHERE entry_key = 'old'").fetchone()
    conn.commit()
    assert "secret" not in error and "***@127.0.0.1" in error and "no user:password part" in error, error
