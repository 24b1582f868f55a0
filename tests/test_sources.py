"""Sources: the poll schedule, conditional GET, backoff, auto-disable, staleness and batches."""

from __future__ import annotations

import hashlib
import random
import socket
from dataclasses import replace
from datetime import timedelta

import pytest

from sitrep import pipeline, sources
from sitrep.errors import ConfigError
from sitrep.settings import Settings
from tests.pages import Item, article_html, paragraphs, rss
from tests.reports import load_reports, paragraph


class Feed:
    """A feed served with validators; ``lying`` keeps the first ETag (and answers 304) whatever the body."""

    def __init__(self, site, path: str = "/rss.xml", *, n: int = 3, lying: bool = False, etag: bool = True):
        self.site, self.path, self.lying, self.etag = site, path, lying, etag
        self.items = [self.item(i) for i in range(n)]
        self.first_tag: str | None = None
        self.url = site.add(path, handler=self.handle)

    def item(self, i: int) -> Item:
        return Item(title=f"Story {i}", link=self.site.url(f"/story/{i}.html"), guid=f"story-{i}",
                    date=f"Tue, 12 Mar 2024 {i % 24:02d}:00:00 GMT")

    def publish(self) -> None:
        self.items.append(self.item(len(self.items)))

    def handle(self, h) -> None:
        body = rss(self.items).encode()
        tag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if self.lying:
            self.first_tag = self.first_tag or tag
            tag = self.first_tag
        if self.etag and h.headers.get("If-None-Match") == tag:
            h.send_response(304)
            h.send_header("ETag", tag)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        if self.etag:
            h.send_header("ETag", tag)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def requests(self) -> list[dict[str, str]]:
        return [headers for path, headers in self.site.hits if path == self.path]


def _add(conn, *urls: str) -> list[int]:
    sources.add_feeds(conn, [sources.FeedSpec(url=u, name=u.rsplit("/", 1)[1]) for u in urls])
    ids = [r[0] for r in conn.execute("SELECT source_id FROM sources WHERE feed_url = ANY(%s) ORDER BY source_id",
                                      (list(urls),))]
    conn.commit()
    return ids


def _source(conn, source_id: int) -> dict:
    cur = conn.execute("SELECT * FROM sources WHERE source_id = %s", (source_id,))
    row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
    conn.commit()
    return row


def _log(conn, source_id: int) -> list[dict]:
    cur = conn.execute("SELECT * FROM poll_log WHERE source_id = %s ORDER BY poll_id", (source_id,))
    rows = [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return rows


def _fetch(settings: Settings, **changes) -> Settings:
    return replace(settings, fetch=replace(settings.fetch, **changes))


# ----------------------------------------------------------------------------------- conditional GET


def test_304_flow_costs_no_parse(site, conn, settings):
    feed = Feed(site)
    [sid] = _add(conn, feed.url)
    first = pipeline.poll_batch(settings, [sid], run_id="r1")
    second = pipeline.poll_batch(settings, [sid], run_id="r2")
    assert (first["parsed"], first["new"], second["not_modified"], second["parsed"], second["new"]) == (1, 3, 1, 0, 0)
    assert feed.requests()[1]["if-none-match"] == _source(conn, sid)["etag"]
    log = _log(conn, sid)
    assert [(r["http_status"], r["conditional"], r["not_modified"], r["parsed"]) for r in log] == [
        (200, False, False, True), (304, True, True, False)]
    feed.publish()
    third = pipeline.poll_batch(settings, [sid], run_id="r3")
    assert (third["parsed"], third["entries"], third["new"]) == (1, 4, 1)  # only the new entry is recorded


def test_an_unchanged_body_without_validators_is_not_parsed(site, conn, settings):
    feed = Feed(site, etag=False)
    [sid] = _add(conn, feed.url)
    pipeline.poll_batch(settings, [sid])
    again = pipeline.poll_batch(settings, [sid])
    assert (again["unchanged"], again["parsed"], again["new"]) == (1, 0, 0)
    assert _log(conn, sid)[-1]["unchanged"]


def test_validators_that_hide_changes_are_caught_and_dropped(site, conn, settings):
    feed = Feed(site, lying=True)
    [sid] = _add(conn, feed.url)
    pipeline.poll_batch(settings, [sid])
    feed.publish()
    assert pipeline.poll_batch(settings, [sid])["not_modified"] == 1  # the lie: 304 though a story was added
    # Nothing new for longer than the quiet period: the next poll goes without validators, once.
    conn.execute("UPDATE sources SET added_at = now() - interval '3 days', last_new_entry_at = now() - interval '3 days'"
                 " WHERE source_id = %s", (sid,))
    conn.commit()
    check = pipeline.poll_batch(settings, [sid])
    assert (check["revalidated"], check["distrusted"], check["new"]) == (1, 1, 1)
    assert "if-none-match" not in feed.requests()[-1]
    state = _source(conn, sid)
    assert (state["validators_trusted"], state["etag"]) == (False, None)
    pipeline.poll_batch(settings, [sid])
    assert "if-none-match" not in feed.requests()[-1]  # never sent again


def test_honest_validators_survive_the_check(site, conn, settings):
    feed = Feed(site)
    [sid] = _add(conn, feed.url)
    pipeline.poll_batch(settings, [sid])
    conn.execute("UPDATE sources SET added_at = now() - interval '3 days', last_new_entry_at = now() - interval '3 days'"
                 " WHERE source_id = %s", (sid,))
    conn.commit()
    check = pipeline.poll_batch(settings, [sid])
    assert (check["revalidated"], check["unchanged"], check["distrusted"]) == (1, 1, 0)
    assert _source(conn, sid)["validators_trusted"]
    assert pipeline.poll_batch(settings, [sid])["not_modified"] == 1  # conditional again: checked recently


# ------------------------------------------------------------------------------- schedule and health


def test_429_with_retry_after_pushes_the_next_poll_back(site, conn, settings):
    url = site.add("/rss.xml", "slow down", status=429, headers={"Retry-After": "7200", "Content-Type": "text/plain"})
    [sid] = _add(conn, url)
    counts = pipeline.poll_batch(settings, [sid])
    assert counts["failed"] == 1 and site.count("/rss.xml") == 1  # not slept through inside the task
    [row] = _log(conn, sid)
    assert (row["http_status"], row["retry_after"]) == (429, 7200)
    assert "Retry-After 7200s" in row["error"]
    wait = conn.execute("SELECT extract(epoch FROM next_poll_at - now()) FROM sources WHERE source_id = %s",
                        (sid,)).fetchone()[0]
    assert 7000 < wait <= 7200


@pytest.mark.parametrize("late, anchored", [(3, True), (0, True), (900, False)])
def test_a_healthy_feeds_next_poll_counts_from_when_it_was_due(site, conn, settings, late, anchored):
    """A feed whose interval equals the DAG's schedule is due on every run: its poll runs seconds after
    the run's tick (plan, then poll), so counting from the poll put the next due time seconds after the
    next tick, and the feed was polled every other run. A feed polled more than an interval late (a
    stopped scheduler) counts from its poll: no burst of catching up."""
    feed = Feed(site)
    [sid] = _add(conn, feed.url)
    due = conn.execute("UPDATE sources SET next_poll_at = now() - make_interval(secs => %s) WHERE source_id = %s"
                       " RETURNING next_poll_at", (late, sid)).fetchone()[0]
    conn.commit()
    assert pipeline.poll_batch(settings, [sid])["failed"] == 0
    next_poll, polled = conn.execute("SELECT next_poll_at, last_polled_at FROM sources WHERE source_id = %s",
                                     (sid,)).fetchone()
    assert next_poll - (due if anchored else polled) == timedelta(minutes=10)


def test_a_retried_poll_task_skips_the_feeds_its_earlier_try_polled_and_feeds_disabled_since(site, conn, settings):
    """A task retry polls its batch again: a feed that answered 429 with an hour's Retry-After was asked
    again 20 s later (and counted a second failure); a feed an operator disabled after the plan was
    polled all the same."""
    busy = site.add("/busy.xml", b"slow down", status=429, headers={"Retry-After": "3600", "Content-Type": "text/plain"})
    fine, stopped = Feed(site, "/fine.xml"), Feed(site, "/stopped.xml")
    ids = _add(conn, busy, fine.url, stopped.url)
    conn.execute("UPDATE sources SET enabled = false, disabled_reason = 'operator' WHERE feed_url = %s", (stopped.url,))
    conn.commit()
    first = pipeline.poll_batch(settings, ids, run_id="run-1")
    assert (first["feeds"], first["failed"]) == (2, 1)
    again = pipeline.poll_batch(settings, ids, run_id="run-1")  # the task's retry
    assert again["feeds"] == 0
    assert (site.count("/busy.xml"), site.count("/fine.xml"), site.count("/stopped.xml")) == (1, 1, 0)
    assert _source(conn, ids[0])["consecutive_failures"] == 1
    assert pipeline.poll_batch(settings, ids, run_id="run-2")["feeds"] == 2  # the next run polls them again


def test_500_then_success_is_one_successful_poll(site, conn, settings):
    feed = Feed(site)
    answers = iter([500])

    def flaky(h):
        if next(answers, None) == 500:
            h.send_response(500)
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:
            feed.handle(h)

    site.add("/rss.xml", handler=flaky)
    [sid] = _add(conn, feed.url)
    counts = pipeline.poll_batch(settings, [sid])
    assert (counts["failed"], counts["new"]) == (0, 3)
    assert _log(conn, sid)[0]["attempts"] == 2


def test_failures_back_off_and_then_disable_the_feed_with_the_reason(site, conn, settings):
    [sid] = _add(conn, site.url("/missing.xml"))
    strict = _fetch(settings, max_failures=3)
    waits = []
    for _ in range(3):
        pipeline.poll_batch(strict, [sid])
        waits.append(conn.execute("SELECT extract(epoch FROM next_poll_at - now()) FROM sources WHERE source_id = %s",
                                  (sid,)).fetchone()[0])
        conn.commit()
    assert 600 * 2 * 0.8 - 5 < waits[0] < waits[1] < waits[2]  # 10 min doubled each time (with jitter)
    state = _source(conn, sid)
    assert (state["enabled"], state["consecutive_failures"]) == (False, 3)
    assert state["disabled_reason"] == "disabled after 3 consecutive failed polls; last: HTTP 404"
    assert sources.plan_batches(conn, due_only=False, batch_size=10) == []


@pytest.mark.parametrize("failures, expected", [(0, (600, 600)), (1, (960, 1440)), (3, (3840, 5760)), (20, (43200, 43200))])
def test_backoff_doubles_with_jitter_and_is_capped(failures, expected):
    rng = random.Random(7)
    for _ in range(50):
        delay = sources.next_poll_delay(600, failures, max_backoff=43200, rng=rng)
        assert expected[0] <= delay <= expected[1]


def test_retry_after_is_a_floor_but_the_cap_still_holds():
    assert sources.next_poll_delay(600, 1, retry_after=5000, max_backoff=43200) == 5000
    assert sources.next_poll_delay(600, 1, retry_after=10**7, max_backoff=43200) == 43200


def test_a_feed_that_polls_fine_but_yields_nothing_is_flagged_stale(site, conn, settings):
    quiet, busy = Feed(site, "/quiet.xml", n=10), Feed(site, "/busy.xml", n=10)
    ids = _add(conn, quiet.url, busy.url)
    pipeline.poll_batch(settings, ids)
    # Entries an hour apart (the feed's rhythm); the quiet one has had nothing new for two days.
    conn.execute("UPDATE sources SET last_new_entry_at = now() - interval '2 days' WHERE feed_url = %s", (quiet.url,))
    conn.commit()
    health = {h.name: h for h in sources.feed_health(conn, settings.fetch)}
    assert (health["quiet.xml"].stale, health["quiet.xml"].state) == (True, "stale")
    assert (health["busy.xml"].stale, health["busy.xml"].state) == (False, "ok")
    assert health["quiet.xml"].rhythm.total_seconds() == 3600
    assert [h.name for h in sources.feed_health(conn, settings.fetch, unhealthy_only=True)] == ["quiet.xml"]


def test_due_feeds_only_and_batches_keep_each_host_together(site, conn):
    urls = [f"http://a.example/{i}.xml" for i in range(3)] + [f"http://b.example/{i}.xml" for i in range(2)] + \
           ["http://c.example/0.xml"]
    ids = _add(conn, *urls)
    conn.execute("UPDATE sources SET next_poll_at = now() + interval '1 hour' WHERE feed_url = %s", (urls[5],))
    conn.commit()
    batches = sources.plan_batches(conn, due_only=False, batch_size=3)
    assert batches == [ids[0:3], ids[3:6]]
    assert sorted(sum(sources.plan_batches(conn, due_only=True, batch_size=3), [])) == ids[:5]


def test_a_feed_url_with_credentials_is_refused_in_one_line(conn):
    # The fetcher refuses credentials in a URL (they end in logs and tables): such a feed was added, named
    # after "reader:s3cret@host", and then failed every poll.
    with pytest.raises(ConfigError) as caught:
        sources.add_feeds(conn, [sources.FeedSpec(url="http://reader:s3cret@a.example/feed.xml")])
    assert "is not a feed URL" in str(caught.value) and "no user:password part" in str(caught.value)
    assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 0


def test_one_host_however_its_urls_are_spelled_is_one_batch(conn):
    sources.add_feeds(conn, [sources.FeedSpec(url="http://A.example/feed.xml"),
                             sources.FeedSpec(url="http://a.example/other.xml")])
    assert conn.execute("SELECT DISTINCT host FROM sources").fetchall() == [("a.example",)]
    assert len(sources.plan_batches(conn, due_only=False, batch_size=10)) == 1


def test_a_feed_with_10000_entries_is_recorded_once(site, conn, settings):
    feed = Feed(site, n=10_000)
    [sid] = _add(conn, feed.url)
    assert pipeline.poll_batch(settings, [sid])["new"] == 10_000
    assert pipeline.poll_batch(settings, [sid])["not_modified"] == 1
    assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 10_000


def test_one_failing_feed_never_fails_the_others_of_its_batch(site, conn, settings):
    good = Feed(site, "/good.xml")
    site.add("/html.xml", "<html><body>Not a feed</body></html>")
    site.add("/empty.xml", rss([]), headers={"Content-Type": "application/rss+xml"})

    def hang_up(h):
        h.connection.shutdown(socket.SHUT_RDWR)  # the connection drops before any answer

    site.add("/reset.xml", handler=hang_up)
    ids = _add(conn, good.url, site.url("/html.xml"), site.url("/empty.xml"), site.url("/reset.xml"),
               "http://127.0.0.1:9/refused.xml")
    counts = pipeline.poll_batch(_fetch(settings, retries=0), ids, run_id="mixed")
    assert (counts["feeds"], counts["failed"], counts["new"]) == (5, 3, 3)
    errors = dict(conn.execute("SELECT s.name, l.error IS NOT NULL FROM poll_log l JOIN sources s USING (source_id)"))
    assert errors == {"good.xml": False, "html.xml": True, "empty.xml": False, "reset.xml": True, "refused.xml": True}


def test_the_poll_log_counts_the_pages_fetched_after_each_poll(site, conn, settings):
    feed = Feed(site)
    for i in range(3):
        site.add(f"/story/{i}.html", article_html(f"Shelling hits district {i}", paragraphs(f"story {i}")))
    [sid] = _add(conn, feed.url)
    for run in ("r1", "r2"):
        pipeline.poll_batch(settings, [sid], run_id=run)
        pipeline.collect_batch(settings, [sid])
    rows = conn.execute("SELECT run_id, http_status, new_entries, pages_fetched FROM poll_log_v1 ORDER BY poll_id")
    assert rows.fetchall() == [("r1", 200, 3, 3), ("r2", 304, 0, 0)]


def _reads_of_reports(conn) -> int:  # type: ignore[no-untyped-def]
    """Scans of the reports table so far (this backend's statistics flushed first)."""
    conn.commit()
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                        " WHERE relname = 'reports'").fetchone()[0]


def test_feeds_list_reads_the_reports_once_not_once_per_feed(conn, settings):
    # `sitrep feeds list` counted each feed's reports with a scan of reports per feed (reports.source_id
    # has no index): 5.7 s for 1,000 feeds and 40k reports, past the statement timeout at scaling.md's size.
    load_reports(conn, {"key": "a", "title": "A report", "text": paragraph("a")})
    sources.add_feeds(conn, [sources.FeedSpec(url=f"http://127.0.0.1:9/f{i}.xml") for i in range(30)])
    before = _reads_of_reports(conn)

    health = sources.feed_health(conn, settings.fetch)

    assert _reads_of_reports(conn) - before == 1 and len(health) == 30


# -------------------------------------------------------------------------------- revised articles


ATOM = {"Content-Type": "application/atom+xml"}


def _atom(site, entries: list[tuple[str, str, str]]) -> str:
    """An Atom feed of (id, link path, updated) entries."""
    items = "".join(f'<entry><id>{i}</id><title>Shelling of Kharkiv</title><link href="{site.url(path)}"/>'
                    f"<updated>{updated}</updated></entry>" for i, path, updated in entries)
    return f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>{items}</feed>'


def _cycle(settings: Settings, sid: int) -> None:
    pipeline.poll_batch(settings, [sid])
    pipeline.collect_batch(settings, [sid])
    pipeline.load_batch(settings, [sid])


def _texts(conn) -> list[tuple[str, int]]:
    rows = conn.execute("SELECT text, revision FROM reports_v1 ORDER BY report_id").fetchall()
    conn.commit()
    return rows


def _as_if_fetched_long_ago(conn) -> None:
    conn.execute("UPDATE entries SET updated_at = now() - interval '1 hour'")
    conn.commit()


def _one_article_loaded(site, conn, settings: Settings) -> int:
    """A feed of one article (/a.html, its entry tag:x,2024:1 updated 08:00), polled, collected, loaded."""
    site.add("/a.html", article_html("Shelling of Kharkiv kills two", paragraphs("Kharkiv shelling kills two", 6)))
    feed = site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a.html", "2024-03-12T08:00:00Z")]), headers=ATOM)
    [sid] = _add(conn, feed)
    _cycle(settings, sid)
    return sid


def test_an_entry_its_feed_says_changed_is_fetched_again_and_revised(site, conn, settings):
    # The entry was fetched once: a death toll revised on the page, and its feed's later <updated>,
    # left the report with the first text for good.
    sid = _one_article_loaded(site, conn, settings)
    assert [r for _, r in _texts(conn)] == [1]
    _as_if_fetched_long_ago(conn)
    site.add("/a.html", article_html("Shelling of Kharkiv kills five", paragraphs("Kharkiv toll rises to five", 7)))
    site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a.html", "2024-03-12T11:00:00Z")]), headers=ATOM)
    _cycle(settings, sid)
    [(text, revision)] = _texts(conn)
    assert revision == 2 and "toll rises to five" in text
    # The same date again, or an earlier one: nothing is fetched.
    _as_if_fetched_long_ago(conn)
    hits = site.count("/a.html")
    site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a.html", "2024-03-12T10:00:00Z")]), headers=ATOM)
    _cycle(settings, sid)
    assert site.count("/a.html") == hits


def test_a_feed_that_moves_its_dates_on_every_poll_costs_a_few_fetches_not_one_per_poll(site, conn, settings):
    site.add("/a.html", article_html("Shelling of Kharkiv kills two", paragraphs("Kharkiv shelling kills two", 6)))
    [sid] = _add(conn, site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a.html", "2024-03-12T08:00:00Z")]),
                                headers=ATOM))
    _cycle(settings, sid)
    for hour in range(9, 9 + sources.MAX_REVISITS + 3):
        site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a.html", f"2024-03-12T{hour:02}:00:00Z")]), headers=ATOM)
        _cycle(settings, sid)  # within REVISIT_AFTER of the last fetch: not fetched
        _as_if_fetched_long_ago(conn)
    assert site.count("/a.html") == 1 + sources.MAX_REVISITS
    assert [r for _, r in _texts(conn)] == [1]  # the same text each time: no new revision
    status = conn.execute("SELECT status, revisits FROM entries").fetchall()
    assert status == [("loaded", sources.MAX_REVISITS)], status  # an unchanged refetch is no "duplicate"


def test_a_changed_copy_of_another_sites_report_never_rewrites_that_report(site, conn, settings):
    # B's page was A's wire text (an alias of A's report); B's feed said B changed its copy, B's page was
    # fetched again, and A's report became B's text and canonical URL.
    for path in ("/a/1.html", "/b/1.html"):
        site.add(path, article_html("Shelling of Kharkiv kills two", paragraphs("Kharkiv shelling kills two", 6)))
    fa = site.add("/a.xml", _atom(site, [("tag:a,2024:1", "/a/1.html", "2024-03-12T08:00:00Z")]), headers=ATOM)
    fb = site.add("/b.xml", _atom(site, [("tag:b,2024:1", "/b/1.html", "2024-03-12T08:00:00Z")]), headers=ATOM)
    sa, sb = _add(conn, fa, fb)
    _cycle(settings, sa)
    _cycle(settings, sb)
    [(before,)] = conn.execute("SELECT canonical_url FROM reports").fetchall()
    _as_if_fetched_long_ago(conn)
    site.add("/b/1.html", article_html("Shelling of Kharkiv kills five", paragraphs("Site B's toll rises to five", 7)))
    site.add("/b.xml", _atom(site, [("tag:b,2024:1", "/b/1.html", "2024-03-12T11:00:00Z")]), headers=ATOM)
    _cycle(settings, sb)
    rows = conn.execute("SELECT canonical_url, text FROM reports ORDER BY report_id").fetchall()
    conn.commit()
    assert rows[0][0] == before and "Site B's toll" not in rows[0][1], rows[0][0]


def test_a_revisit_fetches_the_link_the_feed_now_gives_and_a_failure_leaves_the_report(site, conn, settings):
    sid = _one_article_loaded(site, conn, settings)
    # a headline edit moved the article to a new slug: the old one answers 404
    _as_if_fetched_long_ago(conn)
    site.add("/a.html", "gone", status=404)
    site.add("/a-five.html", article_html("Shelling of Kharkiv kills five", paragraphs("Kharkiv toll rises to five", 7)))
    site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a-five.html", "2024-03-12T11:00:00Z")]), headers=ATOM)
    _cycle(settings, sid)
    assert any("toll rises to five" in text for text, _ in _texts(conn))
    # the page is gone for good on the next change: the entry keeps its report, and says why
    _as_if_fetched_long_ago(conn)
    site.add("/a-five.html", "gone", status=404)
    site.add("/atom.xml", _atom(site, [("tag:x,2024:1", "/a-five.html", "2024-03-12T12:00:00Z")]), headers=ATOM)
    _cycle(settings, sid)
    status, report_id, error = conn.execute("SELECT status, report_id, error FROM entries").fetchone()
    conn.commit()
    assert (status, report_id is not None) == ("loaded", True) and "404" in (error or ""), (status, error)
