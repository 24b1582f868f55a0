"""Staging and loading reports: COPY into staging, then one set-based merge per batch.

The merge runs in one transaction under an advisory lock (``LOAD_LOCK``). The lock is what makes
``ingest_seq`` a safe watermark (sequence values are handed out and committed in the same order, so a
reader never sees seq N+1 before seq N) and what lets two loaders never race on the same article. It
serialises only the merge, which is short beside fetching and extraction.

Exact dedup, in order: a URL seen before (report_urls), the canonical URL, the content hash. A staged
row that matches an existing report adds its URL as an alias; one whose text changed updates the
report (revision + 1, a new ingest_seq). Nothing is ever loaded twice: the UNIQUE constraints on
canonical_url and content_sha256 would refuse it.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import psycopg
from psycopg.types.json import Jsonb

from sitrep.records import Report

__all__ = ["LOAD_LOCK", "LoadResult", "load_staged", "stage_reports", "store_pages"]

log = logging.getLogger(__name__)

LOAD_LOCK = 0x5175_0002

_REPORT_COLUMNS = [f.name for f in fields(Report)]
_JSON_COLUMNS = {"places", "actors", "evidence"}
# Columns copied from staging into reports on insert and on update.
_PAYLOAD = [c for c in _REPORT_COLUMNS if c not in {"entry_id", "source_id", "page_id", "url"}]


@dataclass(frozen=True)
class LoadResult:
    inserted: int = 0
    updated: int = 0
    aliased: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


def _clean(value: object) -> object:
    """PostgreSQL text refuses NUL: strip it from every string we hand it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def store_pages(conn: psycopg.Connection, pages: Sequence[tuple[int, str, str, int, str, object, bytes, str]]) -> dict[int, int]:
    """Keep raw pages, zlib-compressed: (entry_id, url, final_url, status, content_type, fetched_at, body, sha).

    Returns entry_id -> page_id. Idempotent: a page fetched again replaces the earlier copy.
    """
    if not pages:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_pages (LIKE pages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY incoming_pages (entry_id, url, final_url, http_status, content_type, fetched_at,"
            " body_sha256, body_size, body_zlib) FROM STDIN"
        ) as copy:
            for entry_id, url, final_url, status, ctype, fetched_at, body, sha in pages:
                copy.write_row(
                    (entry_id, _clean(url), _clean(final_url), status, _clean(ctype), fetched_at, sha, len(body),
                     zlib.compress(body, 6))
                )
        cur.execute(
            """
            INSERT INTO pages (entry_id, url, final_url, http_status, content_type, fetched_at,
                               body_sha256, body_size, body_zlib)
            SELECT entry_id, url, final_url, http_status, content_type, fetched_at, body_sha256, body_size, body_zlib
            FROM incoming_pages
            ON CONFLICT (entry_id) DO UPDATE SET
                url = EXCLUDED.url, final_url = EXCLUDED.final_url, http_status = EXCLUDED.http_status,
                content_type = EXCLUDED.content_type, fetched_at = EXCLUDED.fetched_at,
                body_sha256 = EXCLUDED.body_sha256, body_size = EXCLUDED.body_size, body_zlib = EXCLUDED.body_zlib
            RETURNING entry_id, page_id
            """
        )
        return {int(e): int(p) for e, p in cur.fetchall()}


def stage_reports(conn: psycopg.Connection, reports: Sequence[Report]) -> int:
    """COPY built reports into staged_reports (one row per entry; a retry replaces its row)."""
    if not reports:
        return 0
    cols = ", ".join(_REPORT_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_reports (LIKE staged_reports INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY incoming_reports ({cols}) FROM STDIN") as copy:
            for report in reports:
                row = [
                    Jsonb(v) if name in _JSON_COLUMNS else _clean(v)
                    for name, v in zip(_REPORT_COLUMNS, astuple(report), strict=True)
                ]
                copy.write_row(row)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _REPORT_COLUMNS if c != "entry_id")
        cur.execute(
            f"INSERT INTO staged_reports ({cols}) SELECT {cols} FROM incoming_reports"
            f" ON CONFLICT (entry_id) DO UPDATE SET {updates}, staged_at = now()"
        )
        return cur.rowcount


_SELECT = """
CREATE TEMP TABLE merge_rows ON COMMIT DROP AS
SELECT s.*, NULL::bigint AS report_id, NULL::text AS how,
       row_number() OVER (ORDER BY s.published_at NULLS LAST, s.entry_id) AS ord
FROM staged_reports s
WHERE s.source_id = ANY(%(sources)s)
"""

_MERGE = """
-- 1. a URL seen before, 2. the canonical URL, 3. the same text: an existing report.
UPDATE merge_rows m SET report_id = u.report_id, how = 'url' FROM report_urls u WHERE u.url = m.url;
UPDATE merge_rows m SET report_id = r.report_id, how = 'canonical'
  FROM reports r WHERE m.report_id IS NULL AND r.canonical_url = m.canonical_url;
UPDATE merge_rows m SET report_id = r.report_id, how = 'content'
  FROM reports r WHERE m.report_id IS NULL AND r.content_sha256 = m.content_sha256;

-- New reports: one leader per canonical URL and per text inside the batch (earliest published first).
CREATE TEMP TABLE new_reports ON COMMIT DROP AS
WITH by_url AS (
    SELECT DISTINCT ON (canonical_url) * FROM merge_rows WHERE report_id IS NULL ORDER BY canonical_url, ord
), leaders AS (
    SELECT DISTINCT ON (content_sha256) * FROM by_url ORDER BY content_sha256, ord
), ins AS (
    INSERT INTO reports (source_id, entry_id, page_id, url, {payload})
    SELECT source_id, entry_id, page_id, url, {payload} FROM leaders ORDER BY ord
    RETURNING report_id, entry_id, canonical_url, content_sha256
)
SELECT * FROM ins;

UPDATE merge_rows m SET report_id = n.report_id, how = 'new' FROM new_reports n WHERE n.entry_id = m.entry_id;
UPDATE merge_rows m SET report_id = n.report_id, how = 'canonical'
  FROM new_reports n WHERE m.report_id IS NULL AND n.canonical_url = m.canonical_url;
UPDATE merge_rows m SET report_id = n.report_id, how = 'content'
  FROM new_reports n WHERE m.report_id IS NULL AND n.content_sha256 = m.content_sha256;

-- Every new report starts its own story; the near-duplicate layer may later fold it into another.
WITH s AS (
    INSERT INTO stories (representative_id) SELECT report_id FROM new_reports RETURNING story_id, representative_id
)
UPDATE reports r SET story_id = s.story_id FROM s WHERE r.report_id = s.representative_id;
"""

_UPDATE_CHANGED = """
WITH latest AS (
    SELECT DISTINCT ON (report_id) * FROM merge_rows
    WHERE how IN ('url', 'canonical') ORDER BY report_id, fetched_at DESC NULLS LAST, entry_id DESC
), changed AS (
    SELECT l.* FROM latest l JOIN reports r USING (report_id)
    WHERE r.content_sha256 <> l.content_sha256
      AND NOT EXISTS (SELECT 1 FROM reports o WHERE o.content_sha256 = l.content_sha256)
)
UPDATE reports r SET {assignments}, page_id = coalesce(c.page_id, r.page_id),
    revision = r.revision + 1, updated_at = now(), ingest_seq = nextval('ingest_seq')
FROM changed c WHERE r.report_id = c.report_id
RETURNING r.report_id
"""

_FINISH = """
INSERT INTO report_urls (url, report_id)
SELECT url, report_id FROM merge_rows
UNION SELECT canonical_url, report_id FROM merge_rows
ON CONFLICT (url) DO NOTHING;

UPDATE entries e SET status = CASE WHEN m.how = 'new' THEN 'loaded' ELSE 'duplicate' END,
    report_id = m.report_id, error = NULL, updated_at = now()
FROM merge_rows m WHERE e.entry_id = m.entry_id;

DELETE FROM staged_reports s USING merge_rows m WHERE s.entry_id = m.entry_id;
"""


def load_staged(conn: psycopg.Connection, source_ids: Sequence[int]) -> LoadResult:
    """Merge the staged reports of these sources into reports, in one transaction."""
    payload = ", ".join(_PAYLOAD)
    assignments = ", ".join(f"{c} = c.{c}" for c in _PAYLOAD)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        with conn.cursor() as cur:
            cur.execute(_SELECT, {"sources": list(source_ids)})
            cur.execute(_MERGE.format(payload=payload))  # type: ignore[arg-type]
            cur.execute("SELECT count(*) FILTER (WHERE how = 'new'), count(*) FROM merge_rows")
            row = cur.fetchone()
            inserted, total = (int(row[0]), int(row[1])) if row else (0, 0)
            if total == 0:
                return LoadResult()
            cur.execute(_UPDATE_CHANGED.format(assignments=assignments))  # type: ignore[arg-type]
            updated = cur.rowcount
            cur.execute(_FINISH)  # type: ignore[arg-type]
    result = LoadResult(inserted=inserted, updated=updated, aliased=total - inserted - updated)
    log.info("loaded sources=%s inserted=%d updated=%d aliases=%d", list(source_ids), inserted, updated, result.aliased)
    return result
