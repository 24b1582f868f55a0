"""Staging and the merge into reports and stories, against the real database.

Rules under test: the exact layer (URL seen before, canonical URL, content hash: an alias, never a
second report), updated articles (revision, updated_at, ingest_seq forward), the near-duplicate layer
(syndicated copies share a story, distinct same-topic articles do not), the representative rule, the
duplicate_of invariants, concurrency (two loaders at once: one story) and retries (no second story).
"""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from sitrep import db, dedup, store
from sitrep.pipeline import build_report
from sitrep.records import PageJob, Report
from sitrep.settings import PROJECT_ROOT, DedupSettings
from tests.reports import assert_story_invariants, wait_until_counted
from tests.texts import article, text

DEMO = PROJECT_ROOT / "seeds" / "demo"
DAY = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------- helpers


def _source(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute(
        "INSERT INTO sources (name, feed_url, host) VALUES (%s, %s, %s) RETURNING source_id",
        (name, f"http://127.0.0.1/{name}.xml", "127.0.0.1"),
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def _entry(conn: psycopg.Connection, source_id: int, url: str) -> int:
    row = conn.execute(
        "INSERT INTO entries (source_id, entry_key, link) VALUES (%s, %s, %s)"
        " ON CONFLICT (source_id, entry_key) DO UPDATE SET status = 'pending' RETURNING entry_id",
        (source_id, url, url),
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def _report(conn: psycopg.Connection, source_id: int, url: str, text: str, *, published: datetime = DAY,
            entry_id: int | None = None) -> Report:
    """A report built by the real worker function from a plain-text page (of the entry keyed by its URL,
    unless ``entry_id`` is given)."""
    entry_id = entry_id if entry_id is not None else _entry(conn, source_id, url)
    job = PageJob(entry_id=entry_id, source_id=source_id, url=url, final_url=url, body=b"",
                  fetched_at=datetime.now(UTC), plain_text=text, plain_date=published)
    report = build_report(job)
    assert isinstance(report, Report)
    return report


def _load(conn: psycopg.Connection, source_id: int | list[int], *reports: Report,
          rules: DedupSettings | None = None) -> store.LoadResult:
    """Stage the reports and load the staged rows of the source (or sources) in one batch."""
    with conn.transaction():
        store.stage_reports(conn, reports)
    return store.load_staged(conn, source_id if isinstance(source_id, list) else [source_id], rules=rules)


def _rows(conn: psycopg.Connection) -> dict[str, tuple]:
    """url -> (report_id, story_id, duplicate_of, revision, ingest_seq) from the contract view."""
    rows = conn.execute("SELECT url, report_id, story_id, duplicate_of, revision, ingest_seq FROM reports_v1").fetchall()
    conn.commit()
    return {r[0]: tuple(r[1:]) for r in rows}


# -------------------------------------------------------------------------------------- exact layer


def test_the_same_article_under_another_url_is_an_alias(conn):
    src = _source(conn, "wire")
    body = text(article(1))
    first = _load(conn, src, _report(conn, src, "https://example.com/a/story.html", body))
    again = _load(conn, src, _report(conn, src, "https://www.example.com/a/story.html/?utm_source=rss&fbclid=x", body))
    moved = _load(conn, src, _report(conn, src, "https://example.com/mirror/story-copy.html", "  " + body.upper() + " !"))

    assert (first.inserted, again.aliased, moved.aliased) == (1, 1, 1)
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 1
    urls = {r[0] for r in conn.execute("SELECT url FROM report_urls").fetchall()}
    assert urls == {"https://example.com/a/story.html", "https://www.example.com/a/story.html/?utm_source=rss&fbclid=x",
                    "https://example.com/mirror/story-copy.html"}
    statuses = [r[0] for r in conn.execute("SELECT status FROM entries ORDER BY entry_id").fetchall()]
    assert statuses == ["loaded", "duplicate", "duplicate"]
    assert conn.execute("SELECT count(*) FROM stories").fetchone()[0] == 1
    assert_story_invariants(conn)


@pytest.mark.parametrize("keys_staged", [True, False], ids=["keys-staged", "staged-without-keys"])
def test_a_changed_text_under_the_same_url_is_a_revision_with_a_later_ingest_seq(conn, keys_staged):
    src = _source(conn, "wire")
    url = "https://example.com/live/kharkiv.html"
    old, new = article(2), article(2) + ["Update: the governor said two more people were injured overnight."]
    _load(conn, src, _report(conn, src, url, text(old)))
    other = _load(conn, src, _report(conn, src, "https://example.com/other.html", text(article(3))))
    before = _rows(conn)
    story = before[url][1]
    conn.execute("UPDATE reports SET updated_at = now() - interval '1 hour'")
    conn.commit()

    revision = _report(conn, src, url + "?utm_medium=feed", text(new))
    result = _load(conn, src, revision if keys_staged else replace(revision, minhash=[]))

    after = _rows(conn)
    assert (result.updated, result.inserted, other.inserted) == (1, 0, 1)
    assert after[url][0] == before[url][0] and after[url][3] == 2  # same report, revision 2
    assert after[url][4] > max(r[4] for r in before.values())  # readers following ingest_seq see it
    assert after[url][1] == story  # a story never loses a member
    stored, fresh = conn.execute(
        "SELECT text, updated_at > now() - interval '1 minute' FROM reports WHERE report_id = %s", (after[url][0],)
    ).fetchone()
    assert stored.endswith("two more people were injured overnight.") and fresh
    # The LSH index follows the text: the report's bands are those of its new text.
    bands = conn.execute("SELECT band, hash FROM story_bands WHERE report_id = %s", (after[url][0],)).fetchall()
    assert sorted(bands) == dedup.split_keys(dedup.band_keys(stored))


def test_a_revision_replaces_keys_indexed_under_other_band_settings(conn):
    # The old keys leave the index by primary key, computed from the old text; keys that differ from
    # those (indexed before a change of band settings) must go too, not stay as stale candidates.
    src = _source(conn, "wire")
    url = "https://example.com/live/odesa.html"
    _load(conn, src, _report(conn, src, url, text(article(8))))
    conn.execute("UPDATE story_bands SET hash = hash + 1 WHERE band = 0")
    conn.commit()
    result = _load(conn, src, _report(conn, src, url, text(article(8) + ["Update: the port reopened."])))
    assert result.updated == 1
    report_id, stored = conn.execute("SELECT report_id, text FROM reports").fetchone()
    rows = conn.execute("SELECT band, hash FROM story_bands WHERE report_id = %s", (report_id,)).fetchall()
    assert sorted(rows) == dedup.split_keys(dedup.band_keys(stored))


def test_two_reports_changed_to_the_same_text_in_one_batch_load_and_one_is_revised(conn):
    # Two pages of a site replaced by the same text (a notice, a syndicated copy) in one batch: a text is
    # one report's, so the earliest of the two takes it and the other keeps its text; the batch loads.
    src = _source(conn, "site")
    first, second = "https://site.example/a.html", "https://site.example/b.html"
    _load(conn, src, _report(conn, src, first, text(article(5))), _report(conn, src, second, text(article(6))))
    before = _rows(conn)
    same = text(article(7))

    revised = _report(conn, src, second, same, published=DAY + timedelta(hours=1))
    result = _load(conn, src, revised, _report(conn, src, first, same, published=DAY + timedelta(hours=2)))

    after = _rows(conn)
    assert (result.updated, result.inserted, result.aliased) == (1, 0, 1)
    assert (after[second][0], after[second][3]) == (before[second][0], 2)  # published first: revised
    assert after[first] == before[first]
    holders = conn.execute("SELECT url FROM reports WHERE content_sha256 = %s", (revised.content_sha256,)).fetchall()
    assert holders == [(second,)]
    assert conn.execute("SELECT count(*) FROM entries WHERE status = 'duplicate'").fetchone()[0] == 2
    assert_story_invariants(conn)


def _fetch_again(conn: psycopg.Connection, report: Report, text_: str, *, later: timedelta) -> Report:
    """Another entry for the same page (a feed that changed the item's guid), fetched ``later``."""
    row = conn.execute("INSERT INTO entries (source_id, entry_key, link) VALUES (%s, %s, %s) RETURNING entry_id",
                       (report.source_id, f"{report.url}#again-{later}", report.url)).fetchone()
    conn.commit()
    again = _report(conn, report.source_id, report.url, text_, published=report.published_at or DAY,
                    entry_id=int(row[0]))
    return replace(again, fetched_at=(report.fetched_at or DAY) + later)


def test_a_page_fetched_more_than_once_before_a_load_loads_its_latest_fetch(conn):
    # Staged twice before a load (a load failed in between, and the feed gave the item a new guid): the
    # later fetch is the page's current text, as it would be for a report's page seen again.
    src = _source(conn, "site")
    url = "https://site.example/live.html"
    first = _report(conn, src, url, text(article(5)))
    updated = _fetch_again(conn, first, text(article(5) + ["Update: the convoy reached the city."]),
                           later=timedelta(minutes=10))
    result = _load(conn, src, updated, first)
    assert (result.inserted, result.aliased) == (1, 1)
    assert conn.execute("SELECT content_sha256 FROM reports").fetchall() == [(updated.content_sha256,)]
    assert conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0


def test_a_fetch_with_another_reports_text_does_not_hide_an_earlier_change(conn):
    # Two fetches of a report's page in one batch: a changed text, then another report's text (a text is
    # one report's, so that fetch cannot revise). The change is loaded, as it would be had the two
    # fetches come in batches of their own.
    src = _source(conn, "site")
    page = _report(conn, src, "https://site.example/a.html", text(article(5)))
    other = _report(conn, src, "https://site.example/b.html", text(article(6)))
    _load(conn, src, page, other)
    changed = _fetch_again(conn, page, text(article(5) + ["Update: the bridge was reopened."]), later=timedelta(hours=1))
    notice = _fetch_again(conn, page, text(article(6)), later=timedelta(hours=2))
    result = _load(conn, src, changed, notice)
    assert result.updated == 1
    stored = conn.execute("SELECT content_sha256, revision FROM reports WHERE url = %s", (page.url,)).fetchone()
    assert stored == (changed.content_sha256, 2)


@pytest.mark.parametrize("batches", [1, 2])
def test_an_earlier_fetch_of_a_page_whose_latest_is_another_reports_copy_never_revises_that_report(conn, batches):
    # A site's new page fetched twice before a load: a draft, then the wire's text verbatim. The latest
    # fetch is the wire report's by its text (an alias); the draft is the page's own, not the wire's:
    # it must not become a revision of the wire's report, whatever the batching.
    wire, site = _source(conn, "wire"), _source(conn, "site")
    final = text(article(70))
    _load(conn, wire, _report(conn, wire, "https://wire.example/story.html", final))
    draft = _report(conn, site, "https://site.example/copy.html", text(article(71)))
    draft = replace(draft, fetched_at=(draft.fetched_at or DAY) + timedelta(minutes=5))
    latest = _fetch_again(conn, draft, final, later=timedelta(minutes=10))
    if batches == 1:
        _load(conn, site, draft, latest)
    else:
        _load(conn, site, draft)
        _load(conn, site, latest)
    wire_report = conn.execute("SELECT text, revision FROM reports WHERE url = 'https://wire.example/story.html'").fetchone()
    assert wire_report == (final, 1)


def test_an_older_fetch_loaded_after_a_newer_one_does_not_revise_the_report_back(conn):
    # Two feeds carry the same page; their batches fetch it at different times and load in the other
    # order (a load retried later, an executor running batches side by side). The report keeps the
    # newer text: a revision never goes back in time.
    wire, site = _source(conn, "wire"), _source(conn, "site")
    url = "https://site.example/live.html"
    older = _report(conn, wire, url, text(article(5)))
    newer = _report(conn, site, url, text(article(5) + ["Update: the corridor opened at noon."]))
    newer = replace(newer, fetched_at=(older.fetched_at or DAY) + timedelta(hours=1))
    with conn.transaction():
        store.stage_reports(conn, [older])
    _load(conn, site, newer)
    result = store.load_staged(conn, [wire])
    assert (result.updated, result.aliased) == (0, 1)
    stored = conn.execute("SELECT content_sha256, revision FROM reports").fetchall()
    assert stored == [(newer.content_sha256, 1)]
    assert conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')").fetchone()[0] == 2


def test_an_older_fetch_loaded_after_a_newer_unchanged_one_does_not_revise_the_report_back(conn):
    # Fetch 1 loads text A; fetch 2 (text B) waits in a delayed batch; fetch 3 finds A unchanged and
    # loads first. Fetch 3 changed nothing in the report, so its time was nowhere: the delayed fetch 2,
    # newer than fetch 1, revised the report back to B, older than what fetch 3 saw.
    wire, site = _source(conn, "wire"), _source(conn, "site")
    url = "https://site.example/live.html"
    a, b = text(article(5)), text(article(5) + ["Update: the corridor opened at noon."])
    first = _report(conn, wire, url, a)
    _load(conn, wire, first)
    seq = conn.execute("SELECT ingest_seq FROM reports").fetchone()[0]
    delayed = replace(_report(conn, wire, url + "?utm_source=w", b), fetched_at=(first.fetched_at or DAY) + timedelta(hours=1))
    with conn.transaction():
        store.stage_reports(conn, [delayed])
    confirming = replace(_report(conn, site, url + "?utm_source=s", a), fetched_at=(first.fetched_at or DAY) + timedelta(hours=2))
    _load(conn, site, confirming)
    result = store.load_staged(conn, [wire])
    assert (result.updated, result.aliased) == (0, 1)
    assert conn.execute("SELECT content_sha256, revision, ingest_seq FROM reports").fetchall() == \
        [(first.content_sha256, 1, seq)]  # unchanged for readers: no new revision, no new ingest_seq


def test_a_copy_declaring_another_pages_canonical_never_fails_the_batch(conn):
    # A wire story, a copy of it that declares a third page's URL as its canonical, and that third page
    # with a text of its own, in one batch. The copy's canonical leads for that URL, then gives way to
    # the original (same text): the third page must still get a report (it used to get none, and the
    # batch failed on report_urls.report_id, and with it every later load of the source).
    src = _source(conn, "site")
    original = _report(conn, src, "https://wire.example/a.html", text(article(3)))
    copy = _declaring(_report(conn, src, "https://site.example/b.html", text(article(3)),
                              published=DAY + timedelta(hours=1)), "https://site.example/c.html")
    third = _report(conn, src, "https://site.example/c.html", text(article(4)), published=DAY + timedelta(hours=2))
    copy = replace(copy, fetched_at=(third.fetched_at or DAY) + timedelta(minutes=1))  # the latest of c's fetches
    result = _load(conn, src, original, copy, third)
    assert (result.inserted, result.aliased) == (2, 1)
    rows = _rows(conn)
    assert set(rows) == {original.url, third.url}
    mapped = dict(conn.execute("SELECT url, report_id FROM report_urls").fetchall())
    assert mapped[copy.url] == rows[original.url][0] and mapped[third.url] == rows[third.url][0]
    assert conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')").fetchone()[0] == 3
    assert_story_invariants(conn)


def test_a_declared_canonical_maps_to_the_report_that_holds_it_and_a_later_fetch_revises_that_one(conn):
    # The case above, the third page listed with a tracking parameter: the copy (folded into the
    # original by its text) comes first in load order and used to map c.html to the original's report;
    # the updated third page, fetched later under c.html, then replaced the wire story's text.
    src = _source(conn, "site")
    original = _report(conn, src, "https://wire.example/a.html", text(article(3)))
    copy = _declaring(_report(conn, src, "https://site.example/b.html", text(article(3)),
                              published=DAY + timedelta(hours=1)), "https://site.example/c.html")
    third = _report(conn, src, "https://site.example/c.html?utm_source=rss", text(article(4)),
                    published=DAY + timedelta(hours=2))
    copy = replace(copy, fetched_at=(third.fetched_at or DAY) + timedelta(minutes=1))
    _load(conn, src, original, copy, third)
    holder = dict(conn.execute("SELECT canonical_url, report_id FROM reports").fetchall())
    mapped = dict(conn.execute("SELECT url, report_id FROM report_urls").fetchall())
    assert mapped["https://site.example/c.html"] == holder["https://site.example/c.html"]

    updated = _report(conn, src, "https://site.example/c.html", text(article(4) + ["Update: the road reopened."]),
                      published=DAY + timedelta(hours=2))
    assert _load(conn, src, updated).updated == 1
    texts = {r: (rev, t) for r, rev, t in conn.execute("SELECT report_id, revision, text FROM reports")}
    assert texts[holder["https://wire.example/a.html"]] == (1, original.text)  # the wire story keeps its text
    assert texts[holder["https://site.example/c.html"]] == (2, updated.text)
    assert_story_invariants(conn)


@pytest.mark.parametrize("batches", [1, 2])
def test_a_page_declaring_another_pages_url_with_an_unrelated_text_keeps_its_own_in_any_batching(conn, batches):
    # Page c and an unrelated page b declaring c's URL as its canonical (a template bug): loaded in one
    # batch, b used to lead for c's URL and c's own row followed it, so c's text was never loaded.
    src = _source(conn, "site")
    page_c = _report(conn, src, "https://site.example/c.html", text(article(31)))
    page_b = _declaring(_report(conn, src, "https://site.example/b.html", text(article(32)),
                                published=DAY + timedelta(hours=1)), page_c.url)
    page_b = replace(page_b, fetched_at=(page_c.fetched_at or DAY) + timedelta(minutes=1))
    if batches == 1:
        _load(conn, src, page_c, page_b)
    else:
        _load(conn, src, page_c)
        _load(conn, src, page_b)
    stored = dict(conn.execute("SELECT canonical_url, text FROM reports").fetchall())
    assert stored == {page_c.url: page_c.text, page_b.url: page_b.text}
    assert_story_invariants(conn)


@pytest.mark.parametrize("batches", [1, 2])
def test_a_copy_of_a_revised_text_joins_the_revised_reports_story_in_any_batching(conn, batches):
    # A live page rewritten, and a copy of its new text from another site: in the batch of the revision,
    # the copy used to miss the report (its new keys reached the index after the candidates were found).
    wire, copier = _source(conn, "wire"), _source(conn, "copier")
    url = "https://wire.example/live.html"
    _load(conn, wire, _report(conn, wire, url, text(article(7))))
    revised = _report(conn, wire, url, text(article(8)))
    copy = _report(conn, copier, "https://copier.example/1.html", text(article(8)[:-1]))
    if batches == 1:
        _load(conn, [wire, copier], revised, copy)
    else:
        _load(conn, wire, revised)
        _load(conn, copier, copy)
    rows = _rows(conn)
    assert rows[url][3] == 2 and rows[copy.url][1] == rows[url][1]  # revised; one story
    keys = sorted(conn.execute("SELECT band, hash FROM story_bands WHERE report_id = %s", (rows[url][0],)).fetchall())
    assert keys == sorted(dedup.split_keys(revised.minhash))  # the revision's keys only
    assert_story_invariants(conn)


def test_the_same_text_again_changes_nothing(conn):
    src = _source(conn, "wire")
    url = "https://example.com/a.html"
    _load(conn, src, _report(conn, src, url, text(article(4))))
    before = _rows(conn)
    result = _load(conn, src, _report(conn, src, url, text(article(4))))
    assert (result.inserted, result.updated, result.aliased) == (0, 0, 1)
    assert _rows(conn) == before


def _declaring(report: Report, canonical: str) -> Report:
    """The report as to_report builds it for a page whose rel=canonical was trusted."""
    return replace(report, canonical_url=canonical)


def _canonicals(conn: psycopg.Connection) -> dict[str, tuple[str, int]]:
    rows = conn.execute("SELECT url, canonical_url, revision FROM reports").fetchall()
    conn.commit()
    return {u: (c, r) for u, c, r in rows}


A, B, C = "https://site.example/a.html", "https://site.example/b.html", "https://site.example/c.html"


def test_a_revised_page_declaring_a_stored_reports_canonical_keeps_its_own(conn):
    # a.html now declares b.html as its canonical, with b's text updated (a site merging two pages): the
    # revision is loaded under a.html's canonical (a canonical URL is one report's; the batch used to fail).
    src = _source(conn, "site")
    _load(conn, src, _report(conn, src, A, text(article(20))), _report(conn, src, B, text(article(21))))
    result = _load(conn, src, _declaring(_report(conn, src, A, text(article(21) + ["Updated."])), B))
    assert result.updated == 1
    assert _canonicals(conn) == {A: (A, 2), B: (B, 1)}


def test_two_revised_pages_declaring_the_same_new_canonical_in_one_batch(conn):
    src = _source(conn, "site")
    _load(conn, src, _report(conn, src, A, text(article(20))), _report(conn, src, B, text(article(21))))
    result = _load(conn, src, _declaring(_report(conn, src, A, text(article(22) + ["One."])), C),
                   _declaring(_report(conn, src, B, text(article(22) + ["Two."])), C))
    assert result.updated == 2
    assert _canonicals(conn) == {A: (C, 2), B: (B, 2)}  # the earlier page takes it
    assert conn.execute("SELECT report_id FROM report_urls WHERE url = %s", (C,)).fetchone()[0] == \
        _rows(conn)[A][0]


def test_a_revised_page_declaring_a_new_pages_url_in_the_same_batch(conn):
    # The article moved: its old URL now declares the new one, which the feed lists in the same batch.
    src = _source(conn, "site")
    _load(conn, src, _report(conn, src, A, text(article(20))))
    result = _load(conn, src, _declaring(_report(conn, src, A, text(article(23) + ["One."])), C),
                   _report(conn, src, C, text(article(23))))
    assert (result.inserted, result.updated) == (1, 1)
    assert _canonicals(conn) == {A: (A, 2), C: (C, 1)}
    assert conn.execute("SELECT report_id FROM report_urls WHERE url = %s", (C,)).fetchone()[0] == \
        _rows(conn)[C][0]
    assert_story_invariants(conn)


def test_a_canonical_that_every_page_declares_is_not_trusted(conn):
    src = _source(conn, "one-url-site")
    shared = "https://site.example/news"
    first = _declaring(_report(conn, src, "https://site.example/a.html", text(article(90))), shared)
    _load(conn, src, first)
    # Another article, later, and two more in one batch, all declaring the same URL: separate reports.
    _load(conn, src, _declaring(_report(conn, src, "https://site.example/b.html", text(article(91))), shared))
    _load(conn, src, _declaring(_report(conn, src, "https://site.example/c.html", text(article(92))), shared),
          _declaring(_report(conn, src, "https://site.example/d.html", text(article(93))), shared))
    rows = {u: (c, r) for u, c, r in conn.execute("SELECT url, canonical_url, revision FROM reports").fetchall()}
    assert rows == {"https://site.example/a.html": (shared, 1),
                    "https://site.example/b.html": ("https://site.example/b.html", 1),
                    "https://site.example/c.html": ("https://site.example/c.html", 1),
                    "https://site.example/d.html": ("https://site.example/d.html", 1)}


def test_an_updated_article_under_its_declared_canonical_is_a_revision(conn):
    src = _source(conn, "amp-site")
    canonical = "https://site.example/a.html"
    _load(conn, src, _report(conn, src, canonical, text(article(94))))
    amp = _report(conn, src, "https://site.example/a.html/amp", text(article(94) + ["Updated with new figures."]))
    assert amp.canonical_url == canonical  # the AMP URL normalizes to the article's
    result = _load(conn, src, _declaring(_report(conn, src, "https://amp.site.example/x?id=1",
                                                 text(article(94) + ["Updated again, later."])), canonical))
    assert result.updated == 1
    assert conn.execute("SELECT count(*), max(revision) FROM reports").fetchone() == (1, 2)


# ------------------------------------------------------------------------------- near-duplicates


def test_syndicated_copies_share_a_story_and_distinct_same_topic_articles_do_not(conn):
    wire, copier = _source(conn, "wire"), _source(conn, "copier")
    original = article(10)
    _load(conn, wire, _report(conn, wire, "https://wire.example/kharkiv-strike.html", text(original)))
    _load(conn, wire, _report(conn, wire, "https://wire.example/kharkiv-rally.html", text(article(11))))

    copy = ["KHARKIV (Wire) -- " + original[0].replace(",", "")] + original[1:4] + original[5:]  # a paragraph dropped
    lede = original[:2]  # cut down to its lede
    result = _load(conn, copier,
                   _report(conn, copier, "https://copier.example/news/1.html", text(copy)),
                   _report(conn, copier, "https://copier.example/news/2.html", text(lede)),
                   _report(conn, copier, "https://copier.example/news/3.html", text(article(12))))

    rows = _rows(conn)
    strike = rows["https://wire.example/kharkiv-strike.html"]
    assert result.grouped == 2
    assert rows["https://copier.example/news/1.html"][1] == strike[1]
    assert rows["https://copier.example/news/2.html"][1] == strike[1]
    assert rows["https://copier.example/news/1.html"][2] == strike[0]
    others = {rows["https://wire.example/kharkiv-rally.html"][1], rows["https://copier.example/news/3.html"][1]}
    assert strike[1] not in others and len(others) == 2
    assert_story_invariants(conn)


def test_near_duplicates_inside_one_batch_share_a_story(conn):
    src = _source(conn, "aggregator")
    original = article(20)
    reports = [_report(conn, src, f"https://agg.example/{i}.html", text(p))
               for i, p in enumerate([original, original[:-1], ["Advertisement: our channel has the latest news."] + original, article(21)])]
    result = _load(conn, src, *reports)
    stories = [_rows(conn)[f"https://agg.example/{i}.html"][1] for i in range(4)]
    assert (result.inserted, result.grouped) == (4, 2)
    assert stories[0] == stories[1] == stories[2] != stories[3]
    assert conn.execute("SELECT count(*) FROM stories").fetchone()[0] == 2
    assert_story_invariants(conn)


@pytest.mark.parametrize(
    ("apart", "window_days", "same_story"),
    [
        pytest.param(timedelta(days=6, hours=23), 7.0, True, id="inside-the-window"),
        pytest.param(timedelta(days=7, hours=1), 7.0, False, id="outside-the-window"),
        pytest.param(timedelta(days=400), 0.0, True, id="no-window"),
    ],
)
@pytest.mark.parametrize("batches", [1, 2], ids=["one-batch", "two-batches"])
def test_copies_are_grouped_only_within_the_window(conn, apart, window_days, same_story, batches):
    """A copy is verified against reports published within DedupSettings.window_days of it, whether the
    original is stored or in the same batch; a copy published later than that starts a story of its own."""
    wire, copier = _source(conn, "wire"), _source(conn, "copier")
    original = article(30)
    first = _report(conn, wire, "https://wire.example/strike.html", text(original))
    copy = _report(conn, copier, "https://copier.example/strike.html", text(original[:-1]), published=DAY + apart)
    rules = DedupSettings(window_days=window_days)
    if batches == 1:
        results = [_load(conn, [wire, copier], first, copy, rules=rules)]
    else:
        results = [_load(conn, wire, first, rules=rules), _load(conn, copier, copy, rules=rules)]

    rows = _rows(conn)
    wired, copied = rows["https://wire.example/strike.html"], rows["https://copier.example/strike.html"]
    assert (wired[1] == copied[1]) is same_story
    assert copied[2] == (wired[0] if same_story else None)
    assert sum(r.grouped for r in results) == int(same_story)
    assert sum(r.candidates for r in results) == int(same_story)  # outside the window: not even verified
    assert_story_invariants(conn)


def test_the_window_keeps_a_pair_whose_time_is_unknown():
    """Undated on both sides (no publication date, no fetch time) or not read (an earlier report without a
    story, which verification skips anyway): kept, as before the window."""
    times = {1: DAY, 2: DAY + timedelta(days=8), 3: None, 4: DAY - timedelta(days=1)}
    assert store._within_window({1: {2, 3, 4, 5}, 3: {2}}, times, 7.0) == {1: {3, 4, 5}, 3: {2}}
    assert store._within_window({1: {2, 3, 4, 5}}, times, 0.0) == {1: {2, 3, 4, 5}}


@pytest.mark.parametrize(
    ("first", "second", "representative"),
    [
        # (published, full text?) of the report loaded first and of the one loaded second
        pytest.param((DAY + timedelta(hours=2), True), (DAY, True), "second", id="an-earlier-copy-arrives-later"),
        pytest.param((DAY, True), (DAY + timedelta(hours=2), True), "first", id="a-later-copy-arrives-later"),
        pytest.param((DAY, False), (DAY, True), "second", id="same-time-the-longer-wins"),
        pytest.param((DAY, True), (DAY, False), "first", id="same-time-the-shorter-loses"),
    ],
)
def test_the_representative_is_the_earliest_published_then_the_longest(conn, first, second, representative):
    src = _source(conn, "wire")
    original = article(30)
    for url, (published, full) in (("https://a.example/1.html", first), ("https://b.example/2.html", second)):
        body = original if full else original[:-1]
        if url.startswith("https://b"):
            body = ["KYIV (Wire)", *body]  # another text, so not an exact duplicate
        _load(conn, src, _report(conn, src, url, text(body), published=published))
        if url.startswith("https://a"):
            before = _rows(conn)[url]
    rows = _rows(conn)
    rep_url, dup_url = (("https://a.example/1.html", "https://b.example/2.html") if representative == "first"
                        else ("https://b.example/2.html", "https://a.example/1.html"))
    assert rows[rep_url][2] is None and rows[dup_url][2] == rows[rep_url][0]
    assert conn.execute("SELECT representative_id FROM stories").fetchall() == [(rows[rep_url][0],)]
    if representative == "second":  # the old representative now points elsewhere: readers must see it
        assert rows["https://a.example/1.html"][4] > before[4]
    else:
        assert rows["https://a.example/1.html"][4] == before[4]
    assert_story_invariants(conn)


def test_a_story_never_chains_two_events_and_never_loses_a_member(conn):
    src = _source(conn, "wire")
    a, b = article(40), article(41)
    _load(conn, src, _report(conn, src, "https://x.example/a.html", text(a)))
    _load(conn, src, _report(conn, src, "https://x.example/b.html", text(b)))
    # Both in one text (a digest): near each of them (containment), but it joins one story, merges none.
    bridge = a + b
    _load(conn, src, _report(conn, src, "https://x.example/bridge.html", text(bridge)))
    rows = _rows(conn)
    assert rows["https://x.example/a.html"][1] != rows["https://x.example/b.html"][1]
    assert rows["https://x.example/bridge.html"][1] in {rows["https://x.example/a.html"][1],
                                                        rows["https://x.example/b.html"][1]}
    assert_story_invariants(conn)


def test_a_report_staged_without_lsh_keys_gets_them_at_load(conn):
    src = _source(conn, "old-worker")
    original = article(50)
    first = _report(conn, src, "https://o.example/1.html", text(original))
    second = _report(conn, src, "https://o.example/2.html", text(original[1:]))
    first.minhash, second.minhash = [], []
    _load(conn, src, first)
    result = _load(conn, src, second)
    assert result.grouped == 1
    assert conn.execute("SELECT count(DISTINCT report_id) FROM story_bands").fetchone()[0] == 2


def test_the_lsh_index_is_rebuilt_from_the_reports(conn):
    src = _source(conn, "wire")
    original = article(55)
    _load(conn, src, _report(conn, src, "https://i.example/1.html", text(original)))
    _load(conn, src, _report(conn, src, "https://i.example/2.html", text(article(56))))
    before = conn.execute("SELECT band, hash, report_id FROM story_bands ORDER BY 1, 2, 3").fetchall()
    conn.execute("DELETE FROM story_bands")  # as after an upgrade: reports, but no index yet
    conn.commit()

    assert store.reindex_bands(conn) == 2
    assert store.reindex_bands(conn) == 0  # nothing missing any more
    assert store.reindex_bands(conn, rebuild=True) == 2
    assert conn.execute("SELECT band, hash, report_id FROM story_bands ORDER BY 1, 2, 3").fetchall() == before
    result = _load(conn, src, _report(conn, src, "https://i.example/3.html", text(original[1:])))
    assert result.grouped == 1


# ---------------------------------------------------------------------------- concurrency, retries


def test_two_loaders_with_near_duplicates_at_the_same_moment_end_in_one_story(conn, db_url):
    left, right = _source(conn, "left"), _source(conn, "right")
    original = article(60)
    staged = [_report(conn, left, "https://left.example/1.html", text(original)),
              _report(conn, right, "https://right.example/1.html", text(original[:-1]))]
    with conn.transaction():
        store.stage_reports(conn, staged)
    # Hold the load lock so that both loaders start their merge, then let them race for it.
    holder = db.connect(db_url)
    holder.autocommit = True
    holder.execute("SELECT pg_advisory_lock(%s)", (store.LOAD_LOCK,))
    started = threading.Barrier(3)
    results: list[store.LoadResult | BaseException] = []

    def load(source_id: int) -> None:
        with db.connect(db_url) as own:
            started.wait()
            try:
                results.append(store.load_staged(own, [source_id]))
            except BaseException as exc:  # reported below, in the test's thread
                results.append(exc)

    threads = [threading.Thread(target=load, args=(s,)) for s in (left, right)]
    for t in threads:
        t.start()
    started.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until both are blocked on the lock
        waiting = holder.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
            (store.LOAD_LOCK & 0xFFFFFFFF,),
        ).fetchone()[0]
        if waiting == 2:
            break
        time.sleep(0.01)
    assert waiting == 2
    holder.execute("SELECT pg_advisory_unlock(%s)", (store.LOAD_LOCK,))
    holder.close()
    for t in threads:
        t.join()

    assert all(isinstance(r, store.LoadResult) for r in results), results
    assert sorted(r.inserted for r in results) == [1, 1]  # type: ignore[union-attr]
    assert sorted(r.grouped for r in results) == [0, 1]  # type: ignore[union-attr]
    assert conn.execute("SELECT count(*), count(DISTINCT story_id) FROM reports").fetchone() == (2, 1)
    assert_story_invariants(conn)


def test_a_load_queued_behind_another_waits_longer_than_one_statements_timeout(conn, db_url):
    # Loads run one at a time by design: a batch queued behind others' merges is not stuck, and used to
    # fail (and spend a retry) once the wait passed the connection's statement timeout.
    src = _source(conn, "site")
    report = _report(conn, src, "https://site.example/a.html", text(article(9)))
    with conn.transaction():
        store.stage_reports(conn, [report])
    conn.execute("SET statement_timeout = 1000")
    conn.commit()
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (store.LOAD_LOCK,))  # another batch's merge, 2.5 s long
        release = threading.Timer(2.5, other.execute, ("SELECT pg_advisory_unlock(%s)", (store.LOAD_LOCK,)))
        release.start()
        try:
            assert store.load_staged(conn, [src]).inserted == 1
        finally:
            release.join()
    assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1s"  # each statement of the merge still bounded
    conn.execute("RESET statement_timeout")


def test_a_retried_batch_creates_no_second_report_or_story(conn):
    src = _source(conn, "wire")
    original = article(70)
    batch = [_report(conn, src, "https://r.example/1.html", text(original)),
             _report(conn, src, "https://r.example/2.html", text(original[:-1]))]
    _load(conn, src, *batch)
    before = (_rows(conn), conn.execute("SELECT count(*) FROM stories").fetchone()[0],
              conn.execute("SELECT count(*) FROM story_bands").fetchone()[0])
    conn.commit()
    retry = _load(conn, src, *batch)  # the task ran again after the first run committed
    assert (retry.inserted, retry.updated, retry.aliased) == (0, 0, 2)
    after = (_rows(conn), conn.execute("SELECT count(*) FROM stories").fetchone()[0],
             conn.execute("SELECT count(*) FROM story_bands").fetchone()[0])
    assert after == before


def test_a_batch_that_fails_before_commit_leaves_no_report_story_or_band_behind(conn):
    src = _source(conn, "wire")
    report = _report(conn, src, "https://f.example/1.html", text(article(80)))
    with conn.transaction():
        store.stage_reports(conn, [report])
    with pytest.raises(RuntimeError, match="killed"):
        with conn.transaction():  # the task's transaction, killed after the merge and before its commit
            store.load_staged(conn, [src])
            assert conn.execute("SELECT count(*) FROM story_bands").fetchone()[0] > 0
            raise RuntimeError("worker killed before commit")
    counts = "SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM stories), (SELECT count(*) FROM story_bands)"
    assert conn.execute(counts + ", (SELECT count(*) FROM staged_reports)").fetchone() == (0, 0, 0, 1)
    assert store.load_staged(conn, [src]).inserted == 1  # the retry loads it, once
    assert conn.execute(counts + ", (SELECT count(*) FROM staged_reports)").fetchone() == (1, 1, len(dedup.split_keys(report.minhash)), 0)


# ---------------------------------------------------------------------------------- demo corpus


def _demo_reports(conn: psycopg.Connection) -> tuple[dict[str, Report], dict[str, int], dict]:
    """Reports built by the real extraction from the demo pages, one source per demo site."""
    manifest = yaml.safe_load((DEMO / "MANIFEST.yaml").read_text())
    bases = {s["id"]: f"http://127.0.0.1:{18000 + i}" for i, s in enumerate(manifest["sites"])}
    sources = {s["id"]: _source(conn, s["id"]) for s in manifest["sites"]}
    reports = {}
    for article_ in manifest["articles"]:
        body = (DEMO / "sites" / article_["site"] / Path(article_["path"].lstrip("/"))).read_bytes()
        for site_id, base in bases.items():
            body = body.replace(f"{{{{BASE:{site_id}}}}}".encode(), base.encode())
        body = body.replace(b"{{BASE}}", bases[article_["site"]].encode())
        url = bases[article_["site"]] + article_["path"]
        job = PageJob(entry_id=_entry(conn, sources[article_["site"]], url), source_id=sources[article_["site"]],
                      url=url, final_url=url, body=body, fetched_at=datetime.now(UTC))
        report = build_report(job)
        assert isinstance(report, Report), report
        reports[article_["id"]] = report
    return reports, sources, manifest


def test_the_demo_corpus_groups_syndicated_copies_and_keeps_same_topic_articles_apart(conn):
    reports, sources, manifest = _demo_reports(conn)
    site_of = {a["id"]: a["site"] for a in manifest["articles"]}
    for site, source_id in sources.items():  # one load per site, as the DAG's batches would
        _load(conn, source_id, *[r for aid, r in reports.items() if site_of[aid] == site])
    story = {aid: conn.execute("SELECT story_id FROM reports WHERE entry_id = %s", (r.entry_id,)).fetchone()[0]
             for aid, r in reports.items()}
    conn.commit()

    groups = manifest["syndication_groups"]
    for name, group in groups.items():
        members = [group["original"], *group["copies"]]
        assert len({story[m] for m in members}) == 1, name
    for name, group in manifest["same_topic_groups"].items():
        a, b = group["articles"]
        assert story[a] != story[b], name
    # Nothing else is grouped: one story per article outside the syndication groups.
    assert len(set(story.values())) == len(reports) - sum(len(g["copies"]) for g in groups.values())
    # A syndicated copy's cross-site rel=canonical does not make it an alias of the original.
    assert reports["fp15"].canonical_url.startswith("https://127.0.0.1:18001/")
    assert_story_invariants(conn)


# ------------------------------------------------------------------------------ raw pages, staging


def _page(entry_id: int, url: str, body: bytes) -> tuple:
    return (entry_id, url, url, 200, "text/html", datetime.now(UTC), body, f"sha-{len(body)}")


def test_raw_pages_are_kept_zstd_compressed_and_a_page_fetched_again_replaces_the_earlier_copy(conn):
    src = _source(conn, "wire")
    first, second = _entry(conn, src, "https://p.example/1.html"), _entry(conn, src, "https://p.example/2.html")
    body = b"<html><body><p>" + b"Shelling overnight in Kharkiv. " * 400 + b"</p></body></html>"
    with conn.transaction():
        ids = store.store_pages(conn, [_page(first, "https://p.example/1.html", body),
                                       _page(second, "https://p.example/2.html", b"<html>two</html>")])
    report = _report(conn, src, "https://p.example/1.html", text(article(81)))
    _load(conn, src, replace(report, entry_id=first, page_id=ids[first]))

    again = body.replace(b"Kharkiv", b"Kupiansk")
    with conn.transaction():
        refetched = store.store_pages(conn, [_page(first, "https://p.example/1.html", again)])
    stored = conn.execute("SELECT page_id, body_size, body_zlib FROM pages WHERE entry_id = %s", (first,)).fetchone()
    assert refetched == {first: ids[first]} and stored[0] == ids[first]  # replaced in place: same page id
    assert bytes(stored[2])[:4] == b"\x28\xb5\x2f\xfd" and len(stored[2]) < len(again) // 10  # zstd, compressed
    assert store.page_body(bytes(stored[2])) == again and stored[1] == len(again)
    assert conn.execute("SELECT count(*) FROM pages").fetchone()[0] == 2
    assert conn.execute("SELECT page_id FROM reports").fetchone()[0] == ids[first]  # the report still points at it


def test_a_page_stored_zlib_before_zstd_still_reads():
    body = b"<html><body><p>Odesa: drones shot down overnight, the governor said.</p></body></html>"
    assert store.page_body(zlib.compress(body, 1)) == body
    assert store.page_body(zlib.compress(body)) == body


def test_staging_an_entry_again_replaces_its_staged_row(conn):
    src = _source(conn, "wire")
    report = _report(conn, src, "https://s.example/1.html", text(article(82)))
    with conn.transaction():
        assert store.stage_reports(conn, [report]) == 1
    with conn.transaction():  # the collect task ran again: its row is replaced, not doubled
        assert store.stage_reports(conn, [replace(report, title="Updated headline", minhash=[1, 2, 3])]) == 1
    assert conn.execute("SELECT count(*), max(title), max(minhash::text) FROM staged_reports").fetchone() == (
        1, "Updated headline", "{1,2,3}")


def test_a_row_restaged_while_a_load_runs_waits_for_it_and_the_next_load_merges_it(conn, db_url, monkeypatch):
    # A second collect of the entry (a task's zombie beside its retry) or a re-extraction stages it again
    # while the load merges it: the load used to read the old row in some statements and the new one in
    # others, and its final DELETE removed the new row unmerged.
    src = _source(conn, "site")
    v1 = _report(conn, src, "https://site.example/a.html", text(article(5)))
    with conn.transaction():
        store.stage_reports(conn, [v1])
    v2_text = text(article(5) + ["Re-extracted: a paragraph the old extractor missed."])
    v2 = replace(v1, text=v2_text, content_sha256=v1.content_sha256[:-4] + "beef", minhash=dedup.band_keys(v2_text))

    def restage() -> None:
        with db.connect(db_url) as other, other.transaction():
            store.stage_reports(other, [v2])

    restager = threading.Thread(target=restage)
    merge = store._assign_stories

    def merging(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = merge(*args, **kwargs)
        restager.start()
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                   " AND datname = current_database()")
        assert wait_until_counted(db_url, waiting, 1, seconds=10), "the re-stage did not wait for the load"
        return out

    monkeypatch.setattr(store, "_assign_stories", merging)
    assert store.load_staged(conn, [src]).inserted == 1
    restager.join(30)
    assert not restager.is_alive()
    monkeypatch.setattr(store, "_assign_stories", merge)

    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 1  # v2, for the next load
    assert store.load_staged(conn, [src]).updated == 1
    rid, stored = conn.execute("SELECT report_id, text FROM reports").fetchone()
    keys = sorted(conn.execute("SELECT band, hash FROM story_bands WHERE report_id = %s", (rid,)).fetchall())
    assert stored == v2_text and keys == sorted(dedup.split_keys(v2.minhash))
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0
    assert_story_invariants(conn)


@pytest.mark.parametrize("batches", ["a-batch-a-day", "one-batch"])
def test_a_story_ends_with_its_window_however_its_copies_chain(conn, batches):
    """Day d's text shares most paragraphs with day d-1's and none with day 0's (a templated daily
    bulletin, a rolling article): each joined the day before's story, and three weeks became one story,
    one alert. The window bounds the story: a report joins one that began within window_days of it."""
    desk = _source(conn, "desk")
    paragraphs = article(80, paragraphs=90, words=40)
    reports = [_report(conn, desk, f"https://desk.example/day-{d}.html", text(paragraphs[3 * d:3 * d + 24]),
                       published=DAY + timedelta(days=d)) for d in range(21)]
    if batches == "one-batch":
        _load(conn, desk, *reports)
    else:
        for report in reports:
            _load(conn, desk, report)
    spans = conn.execute("SELECT max(published_at) - min(published_at), count(*) FROM reports GROUP BY story_id"
                         " ORDER BY 1 DESC").fetchall()
    assert spans[0][0] <= timedelta(days=7), spans
    assert len(spans) >= 3 and max(n for _, n in spans) > 1, spans  # still grouped, in week-long stories
    assert_story_invariants(conn)
