"""Two ingestion runs over the same entries at once (`sitrep ingest` beside the scheduler, a lost Celery
task beside its retry): each writer takes its entries' locks in one ascending pass, so none deadlocks,
and an entry another run has closed keeps its outcome.

The interleavings are forced: a wrapper around the real ``sources.mark_entries`` (or ``_plan_fetches``)
waits at the moment that matters until the other run is blocked on a lock (or has finished); the
database work on both sides is the real code's. tests/dags/test_concurrent_runs.py runs two whole DAG
runs at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import psycopg

from sitrep import db, pipeline, sources, store
from sitrep.metrics import Stages
from sitrep.records import PageJob, Report
from tests.pages import Item, article_html, rss
from tests.texts import article, text


def _entries(conn, count: int) -> tuple[int, list[int], list[tuple[PageJob, Report]]]:
    """A source with `count` pending entries, and each one's fetched page built into a report."""
    sid = conn.execute("INSERT INTO sources (name, feed_url, host) VALUES ('wire', 'http://127.0.0.1/w.xml',"
                       " '127.0.0.1') RETURNING source_id").fetchone()[0]
    pages, ids = [], []
    for i in range(count):
        url = f"https://w.example/{i}.html"
        entry_id = conn.execute("INSERT INTO entries (source_id, entry_key, link) VALUES (%s, %s, %s)"
                                " RETURNING entry_id", (sid, url, url)).fetchone()[0]
        job = PageJob(entry_id=entry_id, source_id=sid, url=url, final_url=url, body=b"<html>x</html>",
                      fetched_at=datetime.now(UTC), plain_text=text(article(100 + i)),
                      plain_date=datetime(2024, 6, 3, tzinfo=UTC))
        report = pipeline.build_report(job)
        assert isinstance(report, Report)
        ids.append(entry_id)
        pages.append((job, report))
    conn.commit()
    return sid, ids, pages


def _blocked_on_a_lock(db_url: str, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    with psycopg.connect(db_url, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            if watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                               " AND datname = current_database()").fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


def _hold_in_mark_entries(monkeypatch, db_url: str, thread_name: str) -> threading.Event:
    """In `thread_name`'s chunk, once its pages are written: wait until the other run blocks on a lock."""
    real, holding = sources.mark_entries, threading.Event()

    def mark_entries(conn, outcomes, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == thread_name and outcomes:
            holding.set()
            assert _blocked_on_a_lock(db_url), "the other run never waited"
        return real(conn, outcomes, **kwargs)

    monkeypatch.setattr(sources, "mark_entries", mark_entries)
    return holding


def _in_threads(*runs) -> dict[str, BaseException]:  # type: ignore[no-untyped-def]
    errors: dict[str, BaseException] = {}

    def run(name, work):  # type: ignore[no-untyped-def]
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - what the test reports
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(name, work), name=name) for name, work in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def _stager(db_url: str) -> tuple[psycopg.Connection, pipeline._Stager]:
    conn = db.connect(db_url)
    conn.autocommit = True  # as collect_batch's
    return conn, pipeline._Stager(conn, Stages(), {}, threading.BoundedSemaphore(10))


def test_two_collects_of_the_same_entries_do_not_deadlock(conn, db_url, monkeypatch):
    # Run A fetched pages 2 and 3, page 1 answered 503; run B fetched all three. A locked 2 and 3 for its
    # pages, then 1 for its outcome; B locked 1, then waited for 2: "deadlock detected", a failed task.
    _, ids, pages = _entries(conn, 3)
    (conn_a, a), (conn_b, b) = _stager(db_url), _stager(db_url)
    holding = _hold_in_mark_entries(monkeypatch, db_url, "run A")

    def run_b() -> None:
        holding.wait(10)
        b._flush(pages, [])

    errors = _in_threads(("run A", lambda: a._flush(pages[1:], [(ids[0], "retry", "HTTP 503")])), ("run B", run_b))
    for stager, connection in ((a, conn_a), (b, conn_b)):
        stager.close()
        connection.close()
    assert not errors, {name: f"{type(exc).__name__}: {exc}" for name, exc in errors.items()}
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 3


def test_a_load_and_another_runs_collect_do_not_deadlock(conn, db_url, monkeypatch):
    # Run A staged entries 1 and 2 and loads them; run B stages page 2 again and records page 1's 503.
    # The load locked 1, then waited for 2; B held 2 and waited for 1.
    sid, ids, pages = _entries(conn, 2)
    with conn.transaction():
        store.stage_reports(conn, [report for _, report in pages])
    conn_b, b = _stager(db_url)
    holding = _hold_in_mark_entries(monkeypatch, db_url, "run B")

    def load_a() -> None:
        holding.wait(10)
        with db.connect(db_url) as connection:
            store.load_staged(connection, [sid])

    errors = _in_threads(("run B", lambda: b._flush(pages[1:], [(ids[0], "retry", "HTTP 503")])), ("run A", load_a))
    b.close()
    conn_b.close()
    assert not errors, {name: f"{type(exc).__name__}: {exc}" for name, exc in errors.items()}
    with db.connect(db_url) as connection:
        store.load_staged(connection, [sid])  # what B staged after A's load
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 2
    assert conn.execute("SELECT status, count(*) FROM entries GROUP BY 1").fetchall() == [("loaded", 2)]


def test_an_entry_the_other_run_loaded_stays_loaded(site, conn, settings, monkeypatch):
    # Run B read the entry as pending; run A collected and loaded it; B then found its URL among the
    # reports and marked it a duplicate of the report it had itself produced.
    page = site.add("/a.html", article_html("Shelling near the bridge", text(article(7)).split("\n\n")))
    feed = site.add("/rss.xml", rss([Item(title="Shelling near the bridge", link=page, guid="a")]),
                    headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=feed)])
    conn.commit()
    sid = conn.execute("SELECT source_id FROM sources").fetchone()[0]
    pipeline.poll_batch(settings, [sid], run_id="poll")
    real_plan = pipeline._plan_fetches

    def plan_after_run_a(plan_conn, pending):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "run B":
            _in_threads(("run A", lambda: (pipeline.collect_batch(settings, [sid], run_id="A"),
                                           pipeline.load_batch(settings, [sid], run_id="A"))))
        return real_plan(plan_conn, pending)

    monkeypatch.setattr(pipeline, "_plan_fetches", plan_after_run_a)
    errors = _in_threads(("run B", lambda: pipeline.collect_batch(settings, [sid], run_id="B")))
    assert not errors
    assert conn.execute("SELECT e.status, e.report_id = r.report_id FROM entries e JOIN reports r USING (entry_id)"
                        ).fetchall() == [("loaded", True)]


def test_a_reextraction_and_a_load_of_the_same_entries_do_not_deadlock(conn, db_url, settings, monkeypatch):
    # `sitrep reextract` staged its chunk (locking the entries), then waited for the load lock; a scheduled
    # load held the load lock and waited for an entry another collect had staged again meanwhile.
    from sitrep import reextract

    sid, ids, pages = _entries(conn, 1)
    job, report = pages[0]
    body = article_html("Shelling near the bridge", text(article(100)).split("\n\n")).encode()
    with conn.transaction():
        page_ids = store.store_pages(conn, [(job.entry_id, job.url, job.url, 200, "text/html", job.fetched_at, body,
                                             "0" * 64)])
        store.stage_reports(conn, [pipeline.build_report(replace(job, body=body, plain_text=None,
                                                                 page_id=page_ids[job.entry_id]))])
    store.load_staged(conn, [sid])
    with conn.transaction():  # collected again by another run: staged, not loaded yet
        store.stage_reports(conn, [report])
    real_load, holding = store.load_staged, threading.Event()

    def load_staged(load_conn, source_ids, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "reextract":
            holding.set()
            assert _blocked_on_a_lock(db_url), "the load never waited"
        return real_load(load_conn, source_ids, **kwargs)

    monkeypatch.setattr(store, "load_staged", load_staged)

    def reextract_all() -> None:
        with db.connect(db_url) as connection:
            reextract.reextract(settings, connection)

    def load() -> None:
        holding.wait(10)
        with db.connect(db_url) as connection:
            real_load(connection, [sid])

    errors = _in_threads(("reextract", reextract_all), ("load", load))
    assert not errors, {name: f"{type(exc).__name__}: {exc}" for name, exc in errors.items()}
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0
