"""Per-source extraction health: the outcome of every extraction is logged, and a source whose failed or
fallback share jumps, or whose word counts collapse, against its own history is flagged."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from sitrep.extract_health import MIN_HISTORY, RECENT, record, source_health
from sitrep.records import PageJob, Rejected, Report


def _source(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("INSERT INTO sources (name, feed_url, host) VALUES (%s, %s, 'news.example') RETURNING source_id",
                       (name, f"https://news.example/{name}.xml")).fetchone()
    assert row is not None
    return int(row[0])


def _log(conn: psycopg.Connection, source_id: int, outcomes: list[tuple[str | None, int]]) -> None:
    """Extractions in order, oldest first: (method, words), method None for a failure."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO extraction_log (source_id, extraction_method, word_count, failure) VALUES (%s, %s, %s, %s)",
            [(source_id, method, words, None if method else "no article text") for method, words in outcomes],
        )
    conn.commit()


def _by_name(conn: psycopg.Connection) -> dict:
    return {row.source: row for row in source_health(conn)}


def test_a_steady_source_is_not_flagged(conn):
    sid = _source(conn, "steady")
    _log(conn, sid, [("trafilatura", 500 + i % 50) for i in range(80)] + [("feed-summary", 60)] * 2)
    row = _by_name(conn)["steady"]
    assert row.flag is None and row.recent == RECENT and row.history == 62
    assert row.recent_degraded == 0.1 and row.history_median_words is not None and 500 <= row.history_median_words < 550


def test_a_jump_of_failed_or_fallback_extractions_is_flagged(conn):
    sid = _source(conn, "redesigned")
    _log(conn, sid, [("trafilatura", 520)] * 60 + [("trafilatura-recall", 480)] * 8 + [(None, 0)] * 6 + [("trafilatura", 510)] * 6)
    row = _by_name(conn)["redesigned"]
    assert row.recent_degraded == 0.7 and row.recent_failed == 0.3 and row.history_degraded == 0.0
    assert row.flag is not None and "jumped from 0% to 70%" in row.flag


def test_a_collapse_of_word_counts_is_flagged(conn):
    sid = _source(conn, "teasers")
    _log(conn, sid, [("trafilatura", 600)] * 50 + [("trafilatura", 90)] * RECENT)
    row = _by_name(conn)["teasers"]
    assert row.flag is not None and "median words collapsed from 600 to 90" in row.flag


def test_a_new_or_quiet_source_is_never_flagged(conn):
    sid = _source(conn, "new")
    _log(conn, sid, [("trafilatura", 600)] * (MIN_HISTORY - 1) + [(None, 0)] * RECENT)
    assert _by_name(conn)["new"].flag is None


def test_reextraction_does_not_count_as_history(conn):
    sid = _source(conn, "reextracted")
    _log(conn, sid, [("trafilatura", 500)] * 5)
    conn.execute("INSERT INTO extraction_log (source_id, extraction_method, word_count, reextract)"
                 " SELECT %s, 'trafilatura', 500, true FROM generate_series(1, 50)", (sid,))
    assert _by_name(conn)["reextracted"].recent == 5


def test_record_logs_each_outcome_of_a_batch(conn):
    sid = _source(conn, "batch")
    now = datetime.now(UTC)
    jobs = [PageJob(entry_id=i, source_id=sid, url=f"https://news.example/{i}", final_url=f"https://news.example/{i}",
                    body=b"", fetched_at=now) for i in (1, 2)]
    conn.execute("INSERT INTO entries (entry_id, source_id, entry_key, link) VALUES (1, %s, 'a', 'a'), (2, %s, 'b', 'b')",
                 (sid, sid))
    report = Report(entry_id=1, source_id=sid, page_id=None, url="a", canonical_url="a", title=None, authors=[],
                    published_at=None, published_at_source=None, fetched_at=now, language="en", text="words " * 300,
                    summary=None, word_count=300, content_sha256="x", extraction_method="feed-content")
    assert record(conn, jobs, [report, Rejected(2, "b", "no article text in 'b': 3 words")]) == 2
    rows = conn.execute("SELECT entry_id, extraction_method, word_count, failure FROM extraction_log ORDER BY entry_id").fetchall()
    assert rows == [(1, "feed-content", 300, None), (2, None, 0, "no article text in 'b': 3 words")]
