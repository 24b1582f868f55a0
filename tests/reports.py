"""Reports with chosen fields, loaded through the real staging and merge (for downstream tests).

The enrichment fields (relevance, event_types, places, actors) are set explicitly, so tests of the
consumers never depend on what the enrichment stage would find. And the stories' invariants that every
load keeps, checked by the store's tests and its properties.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from sitrep import sources, store
from sitrep.records import Report


def load_reports(conn: psycopg.Connection, *specs: dict[str, Any]) -> list[int]:
    """Stage and load one report per spec (keys: key, title, text, relevance, places, ...); returns ids.

    ``key`` names the entry (and the URL); the same key with another text makes a new revision.
    """
    with conn.transaction():
        source_id = sources.files_source(conn)
        reports = []
        for spec in specs:
            key = spec["key"]
            url = f"file:///reports/{key}.txt"
            entry_id = conn.execute(
                "INSERT INTO entries (source_id, entry_key, link) VALUES (%s, %s, %s)"
                " ON CONFLICT (source_id, entry_key) DO UPDATE SET status = 'pending' RETURNING entry_id",
                (source_id, f"{key}#{hashlib.sha256(spec['text'].encode()).hexdigest()[:12]}", url),
            ).fetchone()[0]  # type: ignore[index]
            text = spec["text"]
            reports.append(Report(
                entry_id=int(entry_id), source_id=source_id, page_id=None, url=url, canonical_url=url,
                title=spec.get("title"), authors=[], published_at=spec.get("published_at", datetime(2024, 6, 3, tzinfo=UTC)),
                published_at_source="article", fetched_at=datetime.now(UTC), language=spec.get("language", "en"),
                text=text, summary=None, word_count=len(text.split()),
                content_sha256=hashlib.sha256(text.encode()).hexdigest(), extraction_method="plain",
                relevance=spec.get("relevance"), event_types=spec.get("event_types", []),
                places=spec.get("places", []), actors=spec.get("actors", []),
            ))
        store.stage_reports(conn, reports)
    store.load_staged(conn, [source_id])
    urls = [r.url for r in reports]
    rows = conn.execute("SELECT url, report_id FROM report_urls WHERE url = ANY(%s)", (urls,)).fetchall()
    conn.commit()
    ids = dict(rows)
    return [int(ids[u]) for u in urls]


def paragraph(topic: str, n: int = 60) -> str:
    """A distinct text about ``topic`` (distinct enough that no two are near-duplicates)."""
    words = hashlib.sha256(topic.encode()).hexdigest()
    filler = " ".join(f"{topic}-{words[i % 60:i % 60 + 4]}{i}" for i in range(n))
    return f"{topic}. {filler}."


def assert_story_invariants(conn: psycopg.Connection) -> None:
    """Every report has a story; the representative has no duplicate_of; the others point at it."""
    bad = conn.execute(
        """
        SELECT r.report_id, r.story_id, r.duplicate_of, s.representative_id FROM reports r
        LEFT JOIN stories s USING (story_id)
        WHERE s.story_id IS NULL
           OR s.representative_id IS NULL
           OR (r.report_id = s.representative_id AND r.duplicate_of IS NOT NULL)
           OR (r.report_id <> s.representative_id AND r.duplicate_of IS DISTINCT FROM s.representative_id)
           OR EXISTS (SELECT 1 FROM reports d WHERE d.report_id = r.duplicate_of AND d.duplicate_of IS NOT NULL)
        """
    ).fetchall()
    empty = conn.execute(
        "SELECT story_id FROM stories s WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.story_id = s.story_id)"
    ).fetchall()
    conn.commit()
    assert bad == [] and empty == []


def wait_until_counted(db_url: str, count_sql: str, at_least: int, seconds: float) -> bool:
    """Wait until another connection's ``count_sql`` (one count) reaches ``at_least``, while something
    else runs; False after ``seconds``."""
    with psycopg.connect(db_url, autocommit=True) as watcher:
        for _ in range(int(seconds * 20)):
            if watcher.execute(count_sql).fetchone()[0] >= at_least:  # type: ignore[index]
                return True
            time.sleep(0.05)
    return False


def wait_until_staged(db_url: str, at_least: int, seconds: float) -> bool:
    """Wait until ``at_least`` staged reports are committed (by a collect that is still running)."""
    return wait_until_counted(db_url, "SELECT count(*) FROM staged_reports", at_least, seconds)
