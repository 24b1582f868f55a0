"""`sitrep stats`, `sitrep feeds list` and `sitrep feeds-enable`: feed health as the user sees it."""

from __future__ import annotations

from dataclasses import replace

from sitrep import pipeline, sources
from sitrep.commands import stats
from tests.pages import Item, rss


def test_stats_and_feeds_list_show_runs_and_unhealthy_feeds(sitrep, site, conn, settings):  # noqa: F811
    items = [Item(title=f"Story {i}", link=site.url(f"/s/{i}.html"), guid=f"s{i}",
                  date=f"Tue, 12 Mar 2024 {i:02d}:00:00 GMT") for i in range(5)]
    for name in ("quiet", "fine"):
        site.add(f"/{name}.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    urls = [site.url("/quiet.xml"), site.url("/fine.xml"), site.url("/gone.xml")]
    sources.add_feeds(conn, [sources.FeedSpec(url=u, name=u.rsplit("/", 1)[1]) for u in urls])
    ids = [r[0] for r in conn.execute("SELECT source_id FROM sources ORDER BY source_id")]
    conn.commit()
    strict = replace(settings, fetch=replace(settings.fetch, max_failures=2))
    pipeline.poll_batch(strict, ids, run_id="run-1")
    pipeline.poll_batch(strict, ids, run_id="run-2")
    conn.execute("UPDATE sources SET last_new_entry_at = now() - interval '3 days' WHERE name = 'quiet.xml'")
    conn.commit()

    status, out, _ = sitrep("stats", "--runs", "5")
    assert status == 0
    assert "run-1" in out and "run-2" in out
    assert "3 unhealthy feed(s)" not in out and "2 unhealthy feed(s)" in out
    assert "disabled after 2 consecutive failed polls" in out
    assert "stale" in out and "3d ago" in out  # and when it last yielded something

    status, out, _ = sitrep("feeds", "list")
    assert status == 0
    assert "stale" in out and "disabled" in out and "ok" in out and "~1h" in out

    status, out, _ = sitrep("feeds-enable", "--all-disabled")
    assert status == 0 and "1 feed(s) enabled" in out and "gone.xml" in out
    assert conn.execute("SELECT enabled, disabled_reason FROM sources WHERE name = 'gone.xml'").fetchone() == (True, None)


def test_stats_on_an_empty_database_and_bad_arguments(sitrep):  # noqa: F811
    status, out, _ = sitrep("stats")
    assert status == 0 and "0 feed(s): none yet" in out
    status, _, err = sitrep("stats", "--runs", "0")
    assert status == 2 and "--runs: 0 is out of range: give a whole number from 1 to 10,000" in err
    status, _, err = sitrep("feeds-enable")
    assert status == 2 and "--all-disabled" in err
    # A mistyped URL said "0 feed(s) enabled: none were disabled" and exited 0.
    status, _, err = sitrep("feeds-enable", "https://example.org/feed.xml")
    assert status == 2 and "not a feed of this database: https://example.org/feed.xml; see `sitrep feeds list`" in err


def test_stats_counts_the_pages_of_the_runs_it_shows_only(conn):
    # pages_fetched (poll_log_v1) is a subquery per poll: it ran for every poll ever logged, then kept
    # the last runs (5.6 s at 120k polls; past the statement timeout in a day at docs/scaling.md's size).
    sources.add_feeds(conn, [sources.FeedSpec(url="http://127.0.0.1:9/f.xml")])
    conn.execute("INSERT INTO poll_log (source_id, run_id, polled_at, http_status)"
                 " SELECT 1, 'run-' || i, now() - make_interval(mins => 40 - i), 200 FROM generate_series(1, 40) i")
    before = _reads(conn, "entries")

    rows = conn.execute(stats._RUNS_SQL, (3,)).fetchall()

    assert [r[0] for r in rows] == ["run-40", "run-39", "run-38"] and [r[2] for r in rows] == [1, 1, 1]
    assert _reads(conn, "entries") - before <= 3  # one per poll shown (40 before)


def _reads(conn, table: str) -> int:  # type: ignore[no-untyped-def]
    """Scans of a table so far (this backend's statistics flushed first)."""
    conn.commit()
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = %s",
                        (table,)).fetchone()[0]
