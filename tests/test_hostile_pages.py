"""Hostile pages: bounded time and memory per page, recorded as failures, and the batch goes on.

Pages are generated (deeply nested HTML, 9 MB of text in one paragraph, all script, invalid UTF-8,
a page that never ends) and run through the real extraction in sitrep.workers' killable workers. A
page that really hangs trafilatura or exhausts memory cannot be produced on demand, so two tests use
a build function of their own that spins forever or allocates gigabytes: the worker is killed or
stopped by its memory cap, the page is recorded with the reason, the other pages still come back.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sitrep import pipeline, sources
from sitrep.records import PageJob, Rejected, Report
from sitrep.workers import WorkerLimits, run_pages
from tests.pages import Item, article_html, paragraphs, rss

NOW = datetime(2024, 3, 12, tzinfo=UTC)


def hostile_pages() -> dict[str, bytes]:
    return {
        "deeply_nested": ("<html><body>" + "<div>" * 100_000 + "Shelling in Kharkiv. " * 50 + "</div>" * 100_000
                          + "</body></html>").encode(),
        "one_huge_paragraph": ("<html><body><article><p>" + "Artillery struck the district again. " * 250_000
                               + "</p></article></body></html>").encode(),
        "all_script": ("<html><head><script>" + "var x = 'Shelling in Kharkiv';" * 20_000 + "</script></head><body>"
                       "<script>document.write('<p>' + x + '</p>')</script></body></html>").encode(),
        "invalid_utf8": b"<html><head><meta charset='utf-8'></head><body><article><p>"
                        + b"Drones \xff\xfe\xfa over Odesa \xc3\x28 port \xed\xa0\x80 strike. " * 200
                        + b"</p></article></body></html>",
        "nul_bytes": b"<html><body><article><p>" + b"Ceasefire\x00talks\x00resume in Doha. " * 300
                     + b"</p></article></body></html>",
        "binary": bytes(range(256)) * 4000,
    }


def _job(i: int, name: str, body: bytes) -> PageJob:
    url = f"http://127.0.0.1:9/2024/03/12/{name}.html"
    return PageJob(entry_id=i, source_id=1, url=url, final_url=url, body=body, fetched_at=NOW)


def _normal() -> bytes:
    return article_html("Shelling hits a district of Kharkiv", paragraphs("Kharkiv shelling")).encode()


def test_hostile_pages_each_end_as_a_report_or_a_recorded_failure_and_the_batch_goes_on(monkeypatch):
    monkeypatch.setenv("SITREP_EXTRACT_TIMEOUT", "20")
    monkeypatch.setenv("SITREP_WORKER_MEMORY_MB", "1024")
    jobs = [_job(i, name, body) for i, (name, body) in enumerate(hostile_pages().items())]
    jobs.append(_job(99, "normal", _normal()))

    results = pipeline.build_reports(jobs, workers=2)

    assert [r.entry_id for r in results] == [j.entry_id for j in jobs]
    assert isinstance(results[-1], Report) and results[-1].word_count >= 100
    for job, result in zip(jobs, results, strict=True):
        assert isinstance(result, Report | Rejected)
        if isinstance(result, Rejected):
            assert job.url in result.reason  # the reason names the page
        else:
            assert "\x00" not in result.text and result.text.strip()


def spin_on_hang(job: PageJob) -> Report | Rejected:
    """A build that never returns for pages named 'hang' (trafilatura stuck in a pathological page)."""
    if "hang" in job.url:
        while True:
            pass
    if "sleep" in job.url:
        time.sleep(3600)
    return Rejected(job.entry_id, job.url, "built")


def hog_memory(job: PageJob) -> Report | Rejected:
    """A build that tries to hold 4 GB for pages named 'hog' (a parser blowing up on a page)."""
    if "hog" in job.url:
        block = bytearray(4 * 1024**3)
        return Rejected(job.entry_id, job.url, f"held {len(block)} bytes")
    if "crash" in job.url:
        os._exit(11)
    return Rejected(job.entry_id, job.url, "built")


def test_a_batch_far_larger_than_the_wake_up_buffer_is_put_before_any_result_is_read():
    """run_pages (reextract, ingest-files) puts the whole batch, then reads: put() must never block.

    Each put() writes a wake-up byte to a socketpair; with a blocking socket the writer stalled for good
    once about 280 unread bytes filled its buffer, with nobody left to read them.
    """
    jobs = [_job(i, f"p{i}", b"<html></html>") for i in range(3000)]
    done: list[list[Report | Rejected]] = []
    runner = threading.Thread(target=lambda: done.append(run_pages(jobs, 2, build=spin_on_hang)), daemon=True)
    runner.start()
    runner.join(120)  # a deadlock never ends: fail instead of hanging the suite

    assert done, "run_pages deadlocked on its own wake-up socket"
    assert [r.entry_id for r in done[0]] == [j.entry_id for j in jobs]
    assert {r.reason for r in done[0] if isinstance(r, Rejected)} == {"built"}


def test_a_page_that_hangs_its_worker_is_killed_at_the_deadline_and_recorded():
    names = ["a", "hang", "b", "sleep", "c", "d"]
    jobs = [_job(i, name, b"<html></html>") for i, name in enumerate(names)]

    results = run_pages(jobs, 2, limits=WorkerLimits(timeout=1.5), build=spin_on_hang)

    reasons = {name: r.reason for name, r in zip(names, results, strict=True) if isinstance(r, Rejected)}
    assert "timed out after 1.5s (SITREP_EXTRACT_TIMEOUT)" in reasons["hang"]
    assert "timed out" in reasons["sleep"]
    assert [reasons[n] for n in ("a", "b", "c", "d")] == ["built"] * 4


def test_a_page_that_exhausts_memory_or_crashes_its_worker_is_recorded_and_the_worker_replaced():
    names = ["a", "hog", "b", "crash", "c"]
    jobs = [_job(i, name, b"<html></html>") for i, name in enumerate(names)]

    results = run_pages(jobs, 1, limits=WorkerLimits(timeout=30, memory_mb=256), build=hog_memory)

    reasons = {name: r.reason for name, r in zip(names, results, strict=True) if isinstance(r, Rejected)}
    assert "ran out of memory" in reasons["hog"] and "SITREP_WORKER_MEMORY_MB" in reasons["hog"]
    assert "killed its worker (exit code 11)" in reasons["crash"]
    assert [reasons[n] for n in ("a", "b", "c")] == ["built"] * 3


def _endless(handler) -> None:
    """A page that never ends: a chunk of HTML every 0.2 s, forever."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.end_headers()
    try:
        while True:
            handler.wfile.write(b"<p>Still loading the live blog about the shelling...</p>\n")
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:
        return


@pytest.mark.parametrize("extract_timeout", ["20"])
def test_a_batch_with_hostile_pages_loads_the_good_ones_and_records_the_rest(site, conn, settings, monkeypatch,
                                                                             extract_timeout):
    monkeypatch.setenv("SITREP_EXTRACT_TIMEOUT", extract_timeout)
    items = []
    for name, body in hostile_pages().items():
        items.append(Item(title=name, link=site.add(f"/2024/03/12/{name}.html", body), guid=name))
    items.append(Item(title="endless", link=site.add("/2024/03/12/endless.html", handler=_endless), guid="endless"))
    items.append(Item(title="normal", link=site.add("/2024/03/12/normal.html", _normal()), guid="normal"))
    site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Hostile Gazette")])
    conn.commit()
    ids = [row[0] for row in conn.execute("SELECT source_id FROM sources")]
    fetch = replace(settings.fetch, total_timeout=2.0, read_timeout=1.0, retries=0)
    settings = replace(settings, fetch=fetch)

    pipeline.poll_batch(settings, ids)
    pipeline.collect_batch(settings, ids)  # must not raise
    pipeline.load_batch(settings, ids)

    rows = dict((key, (status, error)) for key, status, error in
                conn.execute("SELECT entry_key, status, error FROM entries").fetchall())
    assert rows["normal"][0] == "loaded"
    assert rows["endless"][1] and "timeout" in rows["endless"][1]  # the fetch's total timeout cut it
    for key, (status, error) in rows.items():
        assert status in {"loaded", "duplicate"} or error, f"{key}: {status} without a reason"
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0


def test_pages_and_links_that_used_to_crash_their_batch_are_recorded_and_the_batch_goes_on(site, conn, settings):
    """Each of these raised out of the collect, on every retry, and left the whole batch pending."""
    def busy(h):
        h.send_response(503)
        h.send_header("Retry-After", "\u00b2")  # a digit to str.isdigit(), not to float()
        h.send_header("Content-Length", "0")
        h.end_headers()

    normal = _normal()
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(47))  # 3 kB that won't compress
    items = [
        Item(title="normal", link=site.add("/2024/03/12/normal.html", normal), guid="normal"),
        Item(title="bad port", link="http://127.0.0.1:99999/2024/03/12/x.html", guid="bad-port"),
        Item(title="base64", guid="base64", link=site.add("/2024/03/12/base64.html", normal.replace(b"Kharkiv", b"Kherson"),
                                                          headers={"Content-Type": "text/html; charset=base64"})),
        Item(title="canonical", guid="canonical", link=site.add(
            "/2024/03/12/canonical.html",
            article_html("Shelling in Odesa overnight", paragraphs("Odesa port strike", 6),
                         canonical="http://127.0.0.1:99999/c.html"))),
        Item(title="busy", link=site.add("/2024/03/12/busy.html", handler=busy), guid="busy"),
        # URLs are keys of unique B-tree indexes (2,704 bytes a row at most): a page declaring a 3 kB
        # canonical URL of its own site, a link of 3 kB, a page redirected to a URL of 3 kB.
        Item(title="long canonical", guid="long-canonical", link=site.add(
            "/2024/03/12/long-canonical.html",
            article_html("Drones over Kherson at dawn", paragraphs("Kherson drone attack", 6),
                         canonical=site.url("/2024/03/12/kherson.html?state=" + noise)))),
        Item(title="long link", guid="long-link", link=site.url("/2024/03/12/l" + noise + ".html")),
        Item(title="long redirect", guid="long-redirect", link=site.add(
            "/2024/03/12/moved.html", status=301, headers={"Location": site.add(
                "/2024/03/12/r" + noise + ".html",
                article_html("Ceasefire talks resume in Doha", paragraphs("Doha ceasefire talks", 6))),
                "Content-Length": "0"})),
        Item(title="stored bad link", link=site.add("/2024/03/12/later.html", _normal()), guid="stored"),
    ]
    site.add("/rss.xml", rss(items), headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/rss.xml"), name="Odd Gazette")])
    ids = [row[0] for row in conn.execute("SELECT source_id FROM sources")]
    conn.commit()
    settings = replace(settings, fetch=replace(settings.fetch, retries=0))
    pipeline.poll_batch(settings, ids)
    # A link the poll took before it refused such links (an older version): the collect refuses it.
    conn.execute("UPDATE entries SET link = 'http://127.0.0.1:abc/later.html' WHERE entry_key = 'stored'")
    conn.commit()

    pipeline.collect_batch(settings, ids)  # must not raise
    pipeline.load_batch(settings, ids)

    rows = {key: (status, error) for key, status, error in
            conn.execute("SELECT entry_key, status, error FROM entries").fetchall()}
    assert rows["normal"][0] == rows["base64"][0] == rows["canonical"][0] == "loaded"
    assert rows["long-canonical"][0] == rows["long-redirect"][0] == "loaded"
    assert rows["bad-port"] == rows["long-link"] == ("skipped", "entry has no link")  # the poll counted bad links
    assert rows["stored"][0] == "failed" and "not an http(s) URL" in rows["stored"][1]
    assert rows["busy"][0] == "pending" and "503" in rows["busy"][1]  # retried by a later run
    canonical = conn.execute("SELECT canonical_url FROM reports WHERE url LIKE %s", ("%/canonical.html",)).fetchone()[0]
    assert canonical.endswith("/2024/03/12/canonical.html")  # its own URL, not the one no URL can have
    canonicals = dict(conn.execute("SELECT e.entry_key, r.canonical_url FROM reports r JOIN entries e USING (entry_id)"
                                   " WHERE e.entry_key LIKE 'long-%'").fetchall())
    assert canonicals["long-canonical"].endswith("/2024/03/12/long-canonical.html")  # its own URL
    assert canonicals["long-redirect"].endswith("/2024/03/12/moved.html")  # the link's, not the 3 kB target's
