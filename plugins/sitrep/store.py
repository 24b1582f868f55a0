"""Staging and loading reports: COPY into staging, then one set-based merge per batch.

The merge runs in one transaction under an advisory lock (``LOAD_LOCK``). The lock is what makes
``ingest_seq`` a safe watermark (sequence values are handed out and committed in the same order, so a
reader never sees seq N+1 before seq N) and what lets two loaders never race on the same article. It
serialises only the merge, which is short beside fetching and extraction.

Exact dedup, in order: a URL seen before (report_urls), the canonical URL, the content hash. A staged
row that matches an existing report adds its URL as an alias; one whose text changed updates the
report (revision + 1, a new ingest_seq), unless the fetch is older than the report's text (batches
can load out of the order they fetched in). Inside a batch the same rule holds: a page (or an
article under several URLs) fetched more than once counts by its latest fetch. Nothing is ever
loaded twice: the UNIQUE constraints on canonical_url and content_sha256 would refuse it.

A declared canonical (rel=canonical, og:url) that other, unrelated texts also declare is not trusted:
sites that point every page at one URL would otherwise turn each new article into a "revision" of
the last. Such a page keeps its own URL as its canonical (``_distrust_shared_canonicals``).

Near-duplicates (sitrep.dedup): each new report's LSH band keys are probed against story_bands; the
candidates published within ``DedupSettings.window_days`` of it are verified on their exact shingles,
and the report joins the story of its best verified match (highest Jaccard, then containment) if that
story began within the window too, else starts a story of its own. Stories never merge (so one loose match cannot chain two events together)
and never lose a member.

The story's representative is its earliest published member, then the longest (word_count), then the
first loaded (report_id). Every other member has duplicate_of = the representative, so duplicate_of
never points at a duplicate. When a new member becomes the representative, the members whose
duplicate_of changes get a new ingest_seq, so incremental readers see it; story_id never changes.

Cost (bench/load.py): the merge works on the batch's keys and ids in temporary tables; the texts cross
to Python once (the new reports', to be split into words early; earlier reports' only when they are
candidates) and are otherwise read only by the INSERT. Each new report is written once, its story and
duplicate_of decided before the INSERT (ids and ingest_seq are drawn first, in load order). The LSH
keys are unnested from the staged arrays server-side. Python's share overlaps the server's: a thread
splits the batch's texts into words while the server finds the candidates, and verifies them
(``sitrep.shingles``: exact shingle sets numbered together with numpy) while the server inserts the
keys into story_bands. Staging and raw pages go in by binary COPY.

Concurrency: the whole merge, band lookup and band insert included, runs under LOAD_LOCK, so two
loaders carrying near-duplicates of each other are serialised and the second sees the first's bands
and joins its story. A retried batch finds its URLs in report_urls (or nothing staged) and adds no
report and no story; a batch that failed rolled back its reports, stories and bands together.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import psycopg
import zstandard
from psycopg import sql
from psycopg.types.json import Jsonb

from sitrep import db, dedup
from sitrep.normalize import canonical_url
from sitrep.records import Report
from sitrep.settings import DedupSettings
from sitrep.shingles import ShingleSets

__all__ = ["LOAD_LOCK", "PAGE_ZSTD_LEVEL", "LoadResult", "load_staged", "lock_entries", "page_body", "reindex_bands",
           "stage_reports", "store_pages", "take_load_lock"]

log = logging.getLogger(__name__)

LOAD_LOCK = 0x5175_0002
#: How long a load waits for the loads before it (LOAD_LOCK): loads run one at a time, so a batch queued
#: behind others waits for their merges, beyond one statement's timeout but not forever.
LOAD_LOCK_WAIT = "1h"
#: work_mem of the merge's transaction (SET LOCAL): its joins and sorts over the batch's LSH keys.
MERGE_WORK_MEM = "64MB"
#: zstd level for raw pages: level 1 costs about a third of zlib level 1's CPU per page, for smaller rows.
PAGE_ZSTD_LEVEL = 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_REPORT_COLUMNS = [f.name for f in fields(Report)]
_JSON_COLUMNS = {"places", "actors", "evidence"}
#: Type oids of the columns _clean must see (text, varchar, char and their arrays: a NUL from a page);
#: it visited each of minhash's 36 ints a row for nothing.
_TEXT_TYPES = frozenset({25, 1009, 1043, 1015, 1042, 1014})
# Columns copied from staging into reports on insert and on update.
_PAYLOAD = [c for c in _REPORT_COLUMNS if c not in {"entry_id", "source_id", "page_id", "url", "minhash"}]


def _merged(columns: Sequence[str], merge_alias: str) -> list[str]:
    """Staged columns as the merge sees them: the canonical URL from the merge's row (which may have
    distrusted the declared one, see _distrust_shared_canonicals), the rest from staged_reports ``s``."""
    return [f"{merge_alias}.canonical_url" if c == "canonical_url" else f"s.{c}" for c in columns]


@dataclass(frozen=True)
class Revision:
    """A report this batch revised: the entry whose text it took, and its text before."""

    report_id: int
    entry_id: int
    old_text: str


@dataclass(frozen=True)
class LoadResult:
    inserted: int = 0
    updated: int = 0
    aliased: int = 0
    #: New reports that joined an existing story (or an earlier report of the batch) as near-duplicates.
    grouped: int = 0
    #: LSH candidate pairs verified on their shingles (a measure of the near-duplicate layer's work).
    candidates: int = 0
    #: Time spent in the near-duplicate layer (band probe, verification, stories, band insert).
    dedup_seconds: float = 0.0

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
    """Keep raw pages, zstd-compressed: (entry_id, url, final_url, status, content_type, fetched_at, body, sha).

    Returns entry_id -> page_id. Idempotent: a page fetched again replaces the earlier copy in place
    (same page_id, so the reports and extraction log that point at it keep pointing at it). New pages
    get their ids drawn first and are COPY'd in binary straight into pages: the compressed bytes cross
    the wire once, as bytes (a text COPY would send bytea as hex, twice the size).
    """
    if not pages:
        return {}
    compressor = zstandard.ZstdCompressor(level=PAGE_ZSTD_LEVEL)
    rows = [(entry_id, _clean(url), _clean(final_url), status, _clean(ctype), fetched_at, sha, len(body),
             compressor.compress(body))
            for entry_id, url, final_url, status, ctype, fetched_at, body, sha in pages]
    entry_ids = sorted(row[0] for row in rows)
    with conn.cursor() as cur:
        lock_entries(cur, entry_ids)
        cur.execute("SELECT entry_id, page_id FROM pages WHERE entry_id = ANY(%s)", (entry_ids,))
        page_of = {int(e): int(p) for e, p in cur.fetchall()}
        again = [row for row in rows if row[0] in page_of]
        if again:
            cur.executemany(
                "UPDATE pages SET url = %s, final_url = %s, http_status = %s, content_type = %s, fetched_at = %s,"
                " body_sha256 = %s, body_size = %s, body_zlib = %b WHERE entry_id = %s",
                [(*row[1:], row[0]) for row in again],
            )
        fresh = [row for row in rows if row[0] not in page_of]
        if fresh:
            cur.execute("SELECT nextval(pg_get_serial_sequence('pages', 'page_id')) FROM generate_series(1, %s)",
                        (len(fresh),))
            ids = [int(r[0]) for r in cur.fetchall()]
            columns = ["page_id", "entry_id", "url", "final_url", "http_status", "content_type", "fetched_at",
                       "body_sha256", "body_size", "body_zlib"]
            types = _copy_types(cur, "pages", columns)
            with cur.copy(sql.SQL("COPY pages ({}) FROM STDIN (FORMAT BINARY)").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
                copy.set_types(types)
                for page_id, row in zip(ids, fresh, strict=True):
                    copy.write_row((page_id, *row))
                    page_of[row[0]] = page_id
    return page_of


def page_body(stored: bytes) -> bytes:
    """A page's body as fetched, from pages.body_zlib: zstd (since migration 0009) or zlib (before)."""
    if stored[:4] == _ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().decompress(stored)
    return zlib.decompress(stored)


def lock_entries(cur: psycopg.Cursor | psycopg.Connection, entry_ids: Sequence[int]) -> None:
    """Lock these entries (in entry order, so two writers never deadlock): a second run writing the same
    entries' pages or staged rows waits for the first, then replaces what it wrote.

    A transaction that writes several sets of entries (a collect's chunk: pages, staged reports, outcomes)
    locks their union first: locking one set after another takes them out of order, and two overlapping
    runs, or a load and another run's collect, deadlocked.
    """
    cur.execute("SELECT entry_id FROM entries WHERE entry_id = ANY(%s) ORDER BY entry_id FOR NO KEY UPDATE",
                (list(entry_ids),))


def stage_reports(conn: psycopg.Connection, reports: Sequence[Report]) -> int:
    """COPY built reports into staged_reports (one row per entry; a retry replaces its row).

    The entries are locked first (``lock_entries``), the earlier rows deleted and the new ones COPY'd
    straight into the table, in binary (no text rendering of arrays and JSON, no second copy through
    a temporary table).
    """
    if not reports:
        return 0
    entry_ids = sorted(r.entry_id for r in reports)
    with conn.cursor() as cur:
        lock_entries(cur, entry_ids)
        cur.execute("DELETE FROM staged_reports WHERE entry_id = ANY(%s)", (entry_ids,))
        columns = _copy_types(cur, "staged_reports", _REPORT_COLUMNS)
        texts = {name for name, oid in zip(_REPORT_COLUMNS, columns, strict=True) if oid in _TEXT_TYPES}
        with cur.copy(sql.SQL("COPY staged_reports ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.SQL(", ").join(map(sql.Identifier, _REPORT_COLUMNS)))) as copy:
            copy.set_types(columns)
            for report in reports:
                copy.write_row([Jsonb(getattr(report, name)) if name in _JSON_COLUMNS
                                else _clean(getattr(report, name)) if name in texts else getattr(report, name)
                                for name in _REPORT_COLUMNS])
        return len(reports)


def _copy_types(cur: psycopg.Cursor, table: str, columns: Sequence[str]) -> list[int]:
    """The type oids of ``columns`` of ``table``, in order, for a binary COPY (read from the catalog, so a
    column added by a later migration needs no change here)."""
    cur.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped", (table,))
    oids = {str(name): int(oid) for name, oid in cur.fetchall()}
    return [oids[c] for c in columns]


# The batch: the staged rows of these sources, without their texts (those stay in staged_reports and
# are read only where needed: the INSERT into reports, and verification of near-duplicate candidates).
_SELECT = """
CREATE TEMP TABLE merge_rows ON COMMIT DROP AS
SELECT s.entry_id, s.url, s.canonical_url, s.content_sha256, s.fetched_at, NULL::bigint AS report_id,
       NULL::text AS how, NULL::bigint AS lead, row_number() OVER (ORDER BY s.published_at NULLS LAST, s.entry_id) AS ord,
       row_number() OVER (PARTITION BY s.url ORDER BY s.fetched_at DESC NULLS LAST, s.entry_id DESC) = 1 AS latest
FROM staged_reports s
WHERE s.entry_id = ANY(%(entries)s)
"""

# The batch: the sources' staged rows, their entries locked as stage_reports locks them, so that a row
# re-staged meanwhile (a second collect of the entry, a re-extraction) waits for this load's commit and
# is merged by the next load; the load reads one version of each row from first to last statement, and
# its final DELETE removes only what it merged.
_LOCK_BATCH = """
SELECT e.entry_id FROM entries e
WHERE e.entry_id IN (SELECT entry_id FROM staged_reports WHERE source_id = ANY(%s))
ORDER BY e.entry_id FOR NO KEY UPDATE OF e
"""

_MATCH_STORED = """
-- 1. a URL seen before, 2. the canonical URL, 3. the same text: an existing report.
UPDATE merge_rows m SET report_id = u.report_id, how = 'url' FROM report_urls u WHERE u.url = m.url;
UPDATE merge_rows m SET report_id = r.report_id, how = 'canonical'
  FROM reports r WHERE m.report_id IS NULL AND r.canonical_url = m.canonical_url;
UPDATE merge_rows m SET report_id = r.report_id, how = 'content'
  FROM reports r WHERE m.report_id IS NULL AND r.content_sha256 = m.content_sha256;
-- A page fetched more than once in the batch is one report's: its latest fetch's, else (the latest
-- matched nothing) its most recent earlier fetch's (the earlier fetches follow the latest after the
-- rounds, _FOLLOW_LATEST). Only such pages take part (a few, or none: a self-join of the batch is
-- planned blind, merge_rows has no statistics).
WITH again AS MATERIALIZED (
    SELECT entry_id, url, report_id, latest, fetched_at FROM merge_rows
    WHERE url IN (SELECT url FROM merge_rows WHERE NOT latest)
), taken AS (
    SELECT DISTINCT ON (url) url, report_id FROM again WHERE NOT latest AND report_id IS NOT NULL
    ORDER BY url, fetched_at DESC NULLS LAST, entry_id DESC
)
UPDATE merge_rows m SET report_id = t.report_id, how = 'url'
  FROM again a JOIN taken t USING (url) WHERE m.entry_id = a.entry_id AND a.latest AND m.report_id IS NULL;
"""

# New reports, in rounds until every row has one. A page fetched more than once in the batch counts
# by its latest fetch (its current state, as for a report's page seen again: _UPDATE_CHANGED), and its
# earlier fetches follow it. Among latest fetches: one leader per canonical URL (the latest fetch of
# the article, whatever its URL; of one fetch under several URLs, tracking parameters and the like,
# the earliest published entry's), then one per text (the earliest published: a syndicated copy
# follows the original), and the rows that share a leader's canonical URL or text follow it. A row whose
# canonical URL's leader gave way to another's text (a syndicated copy declaring a third page's
# canonical) matches no leader: it leads in the next round.
_LEAD = """
WITH by_url AS (
    SELECT DISTINCT ON (canonical_url) * FROM merge_rows WHERE report_id IS NULL AND lead IS NULL AND latest
    ORDER BY canonical_url, fetched_at DESC NULLS LAST, ord
)
INSERT INTO merge_leads SELECT DISTINCT ON (content_sha256) entry_id, canonical_url, content_sha256 FROM by_url
ORDER BY content_sha256, ord;
UPDATE merge_rows m SET lead = m.entry_id, how = 'new' FROM merge_leads l WHERE m.entry_id = l.entry_id AND m.lead IS NULL;
UPDATE merge_rows m SET lead = l.entry_id, how = 'canonical'
  FROM merge_leads l WHERE m.lead IS NULL AND m.report_id IS NULL AND m.latest AND l.canonical_url = m.canonical_url;
UPDATE merge_rows m SET lead = l.entry_id, how = 'content'
  FROM merge_leads l WHERE m.lead IS NULL AND m.report_id IS NULL AND m.latest AND l.content_sha256 = m.content_sha256;
"""

# After the rounds: a page's earlier fetches follow its latest, to the report it matched or leads to
# (whatever report their own canonical URL or text matched). A latest fetch that is another report's
# copy by its text leaves its followers copies too: an earlier fetch of the page is not that report's
# page, so it never revises it (_UPDATE_CHANGED revises by URL and canonical only).
_FOLLOW_LATEST = """
WITH older AS MATERIALIZED (SELECT entry_id, url FROM merge_rows WHERE NOT latest)
UPDATE merge_rows m SET report_id = p.report_id, lead = p.lead, how = CASE WHEN p.how = 'content' THEN 'content' ELSE 'url' END
  FROM older o JOIN merge_rows p ON p.url = o.url AND p.latest
  WHERE m.entry_id = o.entry_id
"""

_NEW_REPORTS = """
-- The leaders' report ids and ingest_seq are drawn here, in load order; the rows are written once,
-- after the near-duplicate layer has given each its story and representative (see _INSERT).
CREATE TEMP TABLE new_reports ON COMMIT DROP AS
SELECT nextval(pg_get_serial_sequence('reports', 'report_id')) AS report_id, nextval('ingest_seq') AS ingest_seq,
       o.*, NULL::bigint AS story_id
FROM (SELECT entry_id, url, canonical_url, content_sha256, ord FROM merge_rows WHERE lead = entry_id ORDER BY ord) o;

UPDATE merge_rows m SET report_id = n.report_id FROM new_reports n WHERE n.entry_id = m.lead;

-- A page seen before that now declares a canonical URL another report has (stored, new in this batch,
-- or an earlier page's in it) keeps its report's: a canonical URL is one report's. (The pages whose
-- canonical moved first, a few: the planner has no statistics on merge_rows to see that.)
WITH moved AS MATERIALIZED (
    SELECT m.entry_id, m.canonical_url, r.canonical_url AS stored,
           first_value(m.report_id) OVER (PARTITION BY m.canonical_url ORDER BY m.ord) <> m.report_id AS later
    FROM merge_rows m JOIN reports r USING (report_id)
    WHERE m.how = 'url' AND m.canonical_url <> r.canonical_url
)
UPDATE merge_rows m SET canonical_url = v.stored FROM moved v
WHERE m.entry_id = v.entry_id
  AND (v.later OR EXISTS (SELECT 1 FROM reports o WHERE o.canonical_url = v.canonical_url)
       OR EXISTS (SELECT 1 FROM new_reports n WHERE n.canonical_url = v.canonical_url));
"""

# Reports whose page changed. Of each report's fetches in the batch, the latest that can revise it is
# its revision, unless it is the report's own text. A fetch cannot revise when:
# - its text is another report's or a new one's (a text is one report's): it is skipped, as it would be
#   if the fetches came in batches of their own;
# - it is older than the report's text (a batch fetched earlier and loaded later, after a retry or
#   beside another batch): a report never goes back in time.
# Of pages changed to the same text in one batch, the earliest published is revised and the others
# keep theirs (else the batch failed on the unique content hash).
_UPDATE_CHANGED = """
WITH latest AS (
    SELECT DISTINCT ON (report_id) * FROM merge_rows m
    WHERE how IN ('url', 'canonical')
      AND NOT EXISTS (SELECT 1 FROM reports o WHERE o.content_sha256 = m.content_sha256 AND o.report_id <> m.report_id)
      AND NOT EXISTS (SELECT 1 FROM new_reports o WHERE o.content_sha256 = m.content_sha256)
      AND NOT EXISTS (SELECT 1 FROM reports o WHERE o.report_id = m.report_id
                      AND greatest(o.fetched_at, o.checked_at) > m.fetched_at)
    ORDER BY report_id, fetched_at DESC NULLS LAST, entry_id DESC
), changed AS (
    SELECT DISTINCT ON (l.content_sha256) l.report_id, l.entry_id, r.text AS old_text, {changed_payload}
    FROM latest l JOIN staged_reports s USING (entry_id) JOIN reports r USING (report_id)
    WHERE r.content_sha256 <> l.content_sha256
    ORDER BY l.content_sha256, l.ord
)
UPDATE reports r SET {assignments}, page_id = coalesce(c.page_id, r.page_id),
    revision = r.revision + 1, updated_at = now(), ingest_seq = nextval('ingest_seq')
FROM changed c WHERE r.report_id = c.report_id
RETURNING r.report_id, c.entry_id, c.old_text
"""

# The new reports, written once: story and duplicate_of already known (the story's representative,
# from batch_representatives), ids and ingest_seq drawn in load order by _NEW_REPORTS.
_INSERT = """
INSERT INTO reports (report_id, ingest_seq, story_id, duplicate_of, source_id, entry_id, page_id, url, {payload})
SELECT n.report_id, n.ingest_seq, n.story_id, nullif(b.representative_id, n.report_id),
       s.source_id, s.entry_id, s.page_id, s.url, {staged_payload}
FROM new_reports n JOIN staged_reports s USING (entry_id) JOIN batch_representatives b USING (story_id)
ORDER BY n.report_id
"""

_FINISH = """
-- The latest fetch matched to each report by URL or canonical URL, when it is newer than the report's
-- text: the report's page was seen then (an older fetch loaded later must not revise it back: _UPDATE_CHANGED).
UPDATE reports r SET checked_at = c.at
FROM (SELECT report_id, max(fetched_at) AS at FROM merge_rows WHERE how IN ('url', 'canonical') GROUP BY report_id) c
WHERE r.report_id = c.report_id AND c.at > r.fetched_at AND (r.checked_at IS NULL OR c.at > r.checked_at);

-- Pages' own URLs first, then the canonical URLs they declare: a page's URL maps to its own report, not
-- to another's whose copy declared it as canonical (rows are inserted in this order; a URL already
-- mapped, by an earlier batch or an earlier row, keeps its report). A declared canonical maps only to the
-- report that holds it: a copy folded into another report by its text does not take that report's
-- canonical URL with it (a later fetch of that URL would revise the wrong report).
INSERT INTO report_urls (url, report_id)
SELECT url, report_id FROM (
    SELECT url, report_id, 0 AS declared, ord FROM merge_rows
    UNION ALL SELECT m.canonical_url, m.report_id, 1, m.ord FROM merge_rows m
        JOIN reports r ON r.report_id = m.report_id AND r.canonical_url = m.canonical_url
        WHERE m.canonical_url <> m.url  -- else the row above has inserted it already
) u ORDER BY declared, ord
ON CONFLICT (url) DO NOTHING;

-- An entry another loader already closed keeps that outcome (two runs that collected it at once). One
-- fetched again for its own report (revisits > 0) stays 'loaded', so its feed's next change fetches it again.
UPDATE entries e SET status = CASE WHEN m.how = 'new' OR (e.revisits > 0 AND e.report_id = m.report_id) THEN 'loaded'
                                   ELSE 'duplicate' END,
    report_id = m.report_id, error = NULL, updated_at = now()
FROM merge_rows m WHERE e.entry_id = m.entry_id AND e.status NOT IN ('loaded', 'duplicate');

DELETE FROM staged_reports s USING merge_rows m WHERE s.entry_id = m.entry_id;
"""


def take_load_lock(conn: psycopg.Connection) -> None:
    """LOAD_LOCK for this transaction, waited for up to LOAD_LOCK_WAIT whatever the statement timeout (a
    batch queued behind other loads failed at it and spent a retry); every statement after it is bounded
    by the statement timeout again."""
    db.wait_for_lock(conn, "SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,), LOAD_LOCK_WAIT)


def load_staged(conn: psycopg.Connection, source_ids: Sequence[int], *, rules: DedupSettings | None = None) -> LoadResult:
    """Merge the staged reports of these sources into reports and stories, in one transaction."""
    rules = rules or DedupSettings()
    assignments = ", ".join(f"{c} = c.{c}" for c in _PAYLOAD)
    changed_payload = ", ".join(_merged(["page_id", *_PAYLOAD], "l"))
    with conn.transaction():
        take_load_lock(conn)
        # A batch's keys (36 per report) are hashed, joined and de-duplicated in memory, not in batches
        # spilled to disk (the default 4 MB holds a hash table of about a thousand reports' keys).
        conn.execute("SELECT set_config('work_mem', %s, true)", (MERGE_WORK_MEM,))
        with conn.cursor() as cur:
            cur.execute(_LOCK_BATCH, (list(source_ids),))
            cur.execute(_SELECT, {"entries": [row[0] for row in cur.fetchall()]})
            _distrust_shared_canonicals(cur, rules)
            cur.execute(_MATCH_STORED)
            cur.execute("CREATE TEMP TABLE merge_leads (entry_id bigint, canonical_url text, content_sha256 text)"
                        " ON COMMIT DROP")
            while True:  # one round, unless a canonical URL's leader gave way to another's text
                cur.execute(_LEAD)
                cur.execute("SELECT EXISTS (SELECT 1 FROM merge_rows WHERE report_id IS NULL AND lead IS NULL AND latest)")
                if not cur.fetchone()[0]:  # type: ignore[index]
                    break
            cur.execute(_FOLLOW_LATEST)
            cur.execute(_NEW_REPORTS)
            cur.execute("SELECT count(*) FILTER (WHERE how = 'new'), count(*) FROM merge_rows")
            row = cur.fetchone()
            inserted, total = (int(row[0]), int(row[1])) if row else (0, 0)
            if total == 0:
                return LoadResult()
            cur.execute(_UPDATE_CHANGED.format(assignments=assignments,
                                               changed_payload=changed_payload))
            revisions = [Revision(int(rid), int(entry), str(text)) for rid, entry, text in cur.fetchall()]
            started = time.perf_counter()
            grouped, candidates = _assign_stories(cur, revisions, rules)
            dedup_seconds = time.perf_counter() - started
            cur.execute(_FINISH)
    result = LoadResult(inserted=inserted, updated=len(revisions), aliased=total - inserted - len(revisions),
                        grouped=grouped, candidates=candidates, dedup_seconds=dedup_seconds)
    log.info("loaded sources=%s inserted=%d updated=%d aliases=%d grouped=%d candidates=%d dedup=%.3fs",
             list(source_ids), inserted, len(revisions), result.aliased, grouped, candidates, dedup_seconds)
    return result


# ------------------------------------------------------------------------------------------ stories

# LSH keys of reports (``n``: report_id, entry_id) from the keys the workers staged (dedup.split_keys in
# SQL: position i < FULL_BANDS is band i; the lede windows' keys share the bands after it). Reports staged
# without keys get theirs in Python (_missing_bands).
_STAGED_BANDS = f"""
SELECT DISTINCT CASE WHEN k.i <= {dedup.FULL_BANDS} THEN k.i - 1
                     ELSE {dedup.FULL_BANDS} + mod(k.i - 1 - {dedup.FULL_BANDS}, {dedup.LEDE_BANDS}) END::smallint AS band,
       k.hash, n.report_id
FROM {{reports}} AS n(report_id, entry_id) JOIN staged_reports s USING (entry_id), unnest(s.minhash) WITH ORDINALITY AS k(hash, i)
"""
_BATCH_BANDS = "CREATE TEMP TABLE batch_bands ON COMMIT DROP AS" + _STAGED_BANDS.format(
    reports="(SELECT report_id, entry_id FROM new_reports)")
_STAGED_BANDS_INTO = "INSERT INTO batch_bands" + _STAGED_BANDS
_REVISED = "unnest(%(reports)s::bigint[], %(entries)s::bigint[])"  # revised reports and the entries they took

_CANDIDATES = """
SELECT DISTINCT b.report_id, s.report_id FROM batch_bands b JOIN story_bands s USING (band, hash)
UNION
SELECT DISTINCT b.report_id, o.report_id FROM batch_bands b JOIN batch_bands o USING (band, hash)
WHERE o.report_id <> b.report_id
"""

# Each touched story's representative: its earliest published member, then the longest, then the first
# loaded, over its members in reports and the batch's new ones (not written yet).
_BATCH_REPRESENTATIVES = """
CREATE TEMP TABLE batch_representatives ON COMMIT DROP AS
WITH members AS (
    SELECT story_id, report_id, published_at, word_count FROM reports WHERE story_id = ANY(%(stories)s)
    UNION ALL
    SELECT n.story_id, n.report_id, s.published_at, s.word_count FROM new_reports n JOIN staged_reports s USING (entry_id)
)
SELECT DISTINCT ON (story_id) story_id, report_id AS representative_id FROM members
ORDER BY story_id, published_at ASC NULLS LAST, word_count DESC, report_id
"""

# Stories and earlier members follow their representative; an earlier member whose duplicate_of changes is seen
# again by readers (new ingest_seq), so it is a new revision: (report_id, revision) stays a key.
_REPRESENTATIVES = """
WITH s AS (
    UPDATE stories s SET representative_id = b.representative_id, updated_at = now()
    FROM batch_representatives b WHERE s.story_id = b.story_id
    RETURNING s.story_id, s.representative_id
)
UPDATE reports r SET duplicate_of = nullif(s.representative_id, r.report_id), ingest_seq = nextval('ingest_seq'),
    revision = r.revision + 1, updated_at = now()
FROM s WHERE r.story_id = s.story_id AND r.duplicate_of IS DISTINCT FROM nullif(s.representative_id, r.report_id)
"""


def _assign_stories(cur: psycopg.Cursor, revisions: list[Revision], rules: DedupSettings) -> tuple[int, int]:
    """The near-duplicate layer: bands in, candidates out, verified, stories assigned, new reports written.

    ``revisions``: the reports this batch revised (their old keys leave the index, their new ones go in).

    Returns how many new reports joined a story that already had a member, and how many candidate
    pairs were verified.
    """
    revised = [r.report_id for r in revisions]
    # The batch's texts first: a thread splits them into words while the server builds batch_bands and
    # finds the candidates, then verifies the candidates while the server inserts the batch's keys into
    # story_bands (psycopg waits for the server without holding the GIL), so the server's work and the
    # shingle comparisons overlap instead of adding up.
    cur.execute("SELECT n.report_id, n.url, s.text, coalesce(s.published_at, s.fetched_at)"
                " FROM new_reports n JOIN staged_reports s USING (entry_id) ORDER BY n.ord")
    rows = cur.fetchall()
    new = [(int(rid), str(url)) for rid, url, _, _ in rows]
    times = {int(rid): when for rid, _, _, when in rows}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sitrep-verify") as pool:
        old_keys = pool.submit(_old_keys, revisions)
        batch_sets = pool.submit(ShingleSets, {int(rid): str(text) for rid, _, text, _ in rows})
        del rows
        # The index: revised reports' old bands out before the candidates are looked for, their new ones
        # in batch_bands with the new reports' (a copy of a revised text in this batch finds the report by
        # its new text); all of them go into story_bands below.
        if revisions:
            _drop_bands(cur, old_keys.result())
        staged = {"reports": revised, "entries": [r.entry_id for r in revisions]}
        candidates, stored, story_of, began = _stored_to_verify(cur, times, _candidates(cur, staged),
                                                                rules.window_days)

        def verify() -> tuple[dict[int, int], dict[int, int], int]:
            shingled = batch_sets.result()
            shingled.add(stored)
            return _choose_stories(new, candidates, shingled, story_of, rules, times, began)

        verified = pool.submit(verify)
        # New ids: no conflict. In key order: the primary key's leaf pages are visited once each, in order
        # (3.1-4.0 s -> 2.3-2.6 s for 330k keys into 6.6M); the BRIN on report_id (migration 0009) only
        # needs a batch's keys to land together.
        cur.execute("INSERT INTO story_bands SELECT band, hash, report_id FROM batch_bands ORDER BY band, hash")
        joins, leader_of, checked = verified.result()
    leaders = [rid for rid, leader in leader_of.items() if rid == leader]
    cur.execute("INSERT INTO stories (representative_id) SELECT unnest(%s::bigint[]) RETURNING story_id, representative_id",
                (leaders,))
    story_by_leader = {int(rep): int(story) for story, rep in cur.fetchall()}
    for rid, leader in leader_of.items():
        joins[rid] = story_by_leader[leader]
    cur.execute(
        "UPDATE new_reports n SET story_id = j.story_id FROM unnest(%s::bigint[], %s::bigint[]) AS j(report_id, story_id)"
        " WHERE n.report_id = j.report_id",
        (list(joins), list(joins.values())),
    )

    # Representatives, then the new reports (written once), then earlier members that follow.
    touched = set(joins.values())
    if revised:
        cur.execute("SELECT DISTINCT story_id FROM reports WHERE report_id = ANY(%s) AND story_id IS NOT NULL",
                    (revised,))
        touched |= {int(r[0]) for r in cur.fetchall()}
    cur.execute(_BATCH_REPRESENTATIVES, {"stories": sorted(touched - set(story_by_leader.values()))})
    cur.execute(_INSERT.format(payload=", ".join(_PAYLOAD),
                               staged_payload=", ".join(_merged(_PAYLOAD, "n"))))
    cur.execute(_REPRESENTATIVES)  # the new reports were written with theirs: only earlier members change
    return sum(1 for rid, _ in new if leader_of.get(rid) != rid), checked


def _candidates(cur: psycopg.Cursor, revised: dict[str, list[int]]) -> dict[int, set[int]]:
    """The batch's LSH keys into batch_bands (its new reports', and its ``revised`` reports' new ones),
    and each new report's candidates (earlier or in the batch; a revised report by its new text)."""
    cur.execute(_BATCH_BANDS)
    _missing_bands(cur, "(SELECT report_id, entry_id FROM new_reports)", {})
    if revised["reports"]:
        cur.execute(_STAGED_BANDS_INTO.format(reports=_REVISED), revised)
        _missing_bands(cur, _REVISED, revised)
    # Statistics from a sample of 3,000 keys, not the default 30,000: the plan (hash joins) is the same
    # or better (at a million stored keys the larger sample led to a merge join over story_bands' index,
    # 1.5-2.1 s against 0.9-1.4 s), and ANALYZE costs less (up to 0.6 s for 330k keys).
    cur.execute("ALTER TABLE batch_bands ALTER band SET STATISTICS 10, ALTER hash SET STATISTICS 10,"
                " ALTER report_id SET STATISTICS 10")
    cur.execute("ANALYZE batch_bands")
    cur.execute(_CANDIDATES)
    candidates: dict[int, set[int]] = {}
    skip = set(revised["reports"])  # a revised report keeps its story: it only is a candidate
    for rid, other in cur.fetchall():
        if rid not in skip:
            candidates.setdefault(int(rid), set()).add(int(other))
    return candidates


def _stored_to_verify(cur: psycopg.Cursor, times: dict[int, datetime | None], candidates: dict[int, set[int]],
                      window_days: float
                      ) -> tuple[dict[int, set[int]], dict[int, str], dict[int, int], dict[int, datetime | None]]:
    """The candidates worth verifying, and the texts and stories of the earlier reports among them.

    ``times``: the batch's new reports' publication (or fetch) times. Earlier reports without a story are
    never verified (stories never merge); those published more than ``window_days`` from the new report
    are not either (``_within_window``): their times are read first, and only the texts still wanted.
    Returns (report -> its candidates, earlier report -> text, earlier report -> its story, story -> when
    it began: its representative's, the earliest member's, publication or fetch time).
    """
    story_of: dict[int, int] = {}
    known = dict(times)
    outside = sorted({c for cs in candidates.values() for c in cs} - times.keys())
    if outside:
        cur.execute("SELECT report_id, story_id, coalesce(published_at, fetched_at) FROM reports"
                    " WHERE report_id = ANY(%s) AND story_id IS NOT NULL", (outside,))
        for rid, story, when in cur.fetchall():
            story_of[int(rid)] = int(story)
            known[int(rid)] = when
    candidates = _within_window(candidates, known, window_days)
    wanted = sorted({c for cs in candidates.values() for c in cs} & story_of.keys())
    texts: dict[int, str] = {}
    began: dict[int, datetime | None] = {}
    if wanted:
        cur.execute("SELECT report_id, text FROM reports WHERE report_id = ANY(%s)", (wanted,))
        texts = {int(rid): str(text) for rid, text in cur.fetchall()}
        cur.execute("SELECT s.story_id, coalesce(r.published_at, r.fetched_at) FROM stories s"
                    " JOIN reports r ON r.report_id = s.representative_id WHERE s.story_id = ANY(%s)",
                    (sorted({story_of[rid] for rid in wanted}),))
        began = {int(story): when for story, when in cur.fetchall()}
    return candidates, texts, story_of, began


def _within_window(candidates: dict[int, set[int]], times: Mapping[int, datetime | None], window_days: float
                   ) -> dict[int, set[int]]:
    """Each report's candidates published within ``window_days`` of it (0: all of them).

    A story's copies appear within days, and a text that comes back weeks later (a templated
    bulletin, a republished piece) is another event. Without a window, a report on a common topic
    has more candidates the larger the index (every earlier report on it that shares a band), each
    one a verification. A pair whose time is unknown on either side is kept.
    """
    if not window_days:
        return candidates
    limit = timedelta(days=window_days)

    def near(a: datetime | None, b: datetime | None) -> bool:
        return a is None or b is None or abs(a - b) <= limit

    return {rid: {o for o in others if near(times.get(rid), times.get(o))} for rid, others in candidates.items()}


def _missing_bands(cur: psycopg.Cursor, reports: str, params: dict[str, list[int]]) -> None:
    """Keys for reports (a relation of report_id, entry_id) staged without them (by a worker older than
    the near-duplicate layer)."""
    cur.execute(f"SELECT n.report_id, s.text FROM {reports} AS n(report_id, entry_id) JOIN staged_reports s USING (entry_id)"
                " WHERE cardinality(s.minhash) = 0", params)
    _copy_bands(cur, "batch_bands", [(int(rid), dedup.band_keys(str(text))) for rid, text in cur.fetchall()])


def _old_keys(revisions: list[Revision]) -> dict[int, list[tuple[int, int]]]:
    """The (band, key) rows each revised report was indexed with, from its text before the batch."""
    return {r.report_id: dedup.split_keys(dedup.band_keys(r.old_text)) for r in revisions}


def _drop_bands(cur: psycopg.Cursor, pairs: dict[int, list[tuple[int, int]]]) -> None:
    """Take revised reports' keys (``_old_keys``) out of story_bands by primary key.

    (By report_id, the only other way in, the server scans the table or its BRIN: 0.1-3.7 s for 630
    reports at a million keys, and growing with the table; by key, 0.12-0.19 s whatever its size.)
    A report of which fewer keys were found (indexed under other band settings) has its keys removed
    by report_id.
    """
    rows = [(band, key, rid) for rid, report_pairs in pairs.items() for band, key in report_pairs]
    bands, hashes, ids = ([row[i] for row in rows] for i in range(3))
    # One primary-key probe per key (6 us each), not a hash of the whole table, which the planner prefers
    # until the table is many times the keys (its random_page_cost is for disks, not cached pages).
    cur.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    cur.execute("WITH gone AS (DELETE FROM story_bands s USING unnest(%s::smallint[], %s::bigint[], %s::bigint[])"
                " AS k(band, hash, report_id) WHERE (s.band, s.hash, s.report_id) = (k.band, k.hash, k.report_id)"
                " RETURNING s.report_id) SELECT report_id, count(*) FROM gone GROUP BY report_id", (bands, hashes, ids))
    found = {int(rid): int(n) for rid, n in cur.fetchall()}
    cur.execute("SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT")
    others = [rid for rid, report_pairs in pairs.items() if found.get(rid, 0) < len(report_pairs)]
    if others:
        cur.execute("DELETE FROM story_bands WHERE report_id = ANY(%s::bigint[])", (others,))


def _copy_bands(cur: psycopg.Cursor, table: str, keys: Sequence[tuple[int, Sequence[int]]]) -> None:
    if not keys:
        return
    with cur.copy(sql.SQL("COPY {} (band, hash, report_id) FROM STDIN").format(sql.Identifier(table))) as copy:
        for rid, report_keys in keys:
            for band, key in dedup.split_keys(report_keys):
                copy.write_row((band, key, rid))


def _choose_stories(new: list[tuple[int, str]], candidates: dict[int, set[int]], shingled: ShingleSets,
                    story_of: dict[int, int], rules: DedupSettings, times: Mapping[int, datetime | None],
                    began: dict[int, datetime | None]) -> tuple[dict[int, int], dict[int, int], int]:
    """In load order, each new report joins the story of its best verified candidate, else starts one.

    Only candidates that already have a story count (reports of earlier batches, or reports earlier in
    this batch), so stories never merge, and only stories that began within ``window_days`` of the
    report: the window bounds a story, not only each pair, or a daily templated bulletin chained three
    weeks of strikes into one story (one alert). Returns (report -> existing story it joins, report ->
    the batch report that leads its new story, candidate pairs verified).
    """
    joins: dict[int, int] = {}
    leader_of: dict[int, int] = {}
    began = dict(began)  # the batch's own stories are added as they start
    limit = timedelta(days=rules.window_days) if rules.window_days else None
    checked = 0
    for rid, url in new:
        best: tuple[tuple[float, float], int] | None = None
        when = times.get(rid)
        for other in sorted(candidates.get(rid, ())):
            if other not in shingled or (other not in story_of and other not in leader_of):
                continue
            start = began.get(story_of[other]) if other in story_of else began.get(-leader_of[other])
            if limit is not None and when is not None and start is not None and abs(when - start) > limit:
                continue
            sim = shingled.compare(rid, other)
            checked += 1
            near = dedup.is_near_duplicate(sim, jaccard=rules.jaccard, containment=rules.containment,
                                           min_shingles=rules.min_shingles)
            if near and (best is None or sim.score > best[0]):  # ties: the earliest report
                best = (sim.score, other)
        if best is None:
            leader_of[rid] = rid
            began[-rid] = when  # a story of this batch, keyed apart from stored stories' ids
            continue
        (jaccard, containment), match = best
        if match in story_of:
            joins[rid] = story_of[rid] = story_of[match]
            key = story_of[match]
        else:
            leader_of[rid] = leader_of[match]
            key = -leader_of[match]
        start = began.get(key)
        if when is not None and (start is None or when < start):
            began[key] = when  # an earlier copy: the story began then
        log.info("url=%s report=%d is a near-duplicate of report=%d (jaccard=%.2f containment=%.2f)",
                 url, rid, match, jaccard, containment)
    return joins, leader_of, checked


# Rows that may declare a canonical other texts also claim: a URL other than their canonical (a row
# whose URL is its canonical declares nothing: canonical_url is idempotent), and a canonical a report
# holds or another such row of the batch declares too. Only these are looked at in Python.
_SHARED_CANONICALS = """
SELECT m.entry_id, m.url, m.canonical_url FROM merge_rows m
WHERE m.url <> m.canonical_url
  AND (EXISTS (SELECT 1 FROM reports r WHERE r.canonical_url = m.canonical_url)
       OR EXISTS (SELECT 1 FROM merge_rows o WHERE o.canonical_url = m.canonical_url AND o.entry_id <> m.entry_id))
ORDER BY m.ord
"""


def _distrust_shared_canonicals(cur: psycopg.Cursor, rules: DedupSettings) -> None:
    """A staged row whose declared canonical URL is claimed by an unrelated text keeps its own URL.

    Only rows whose canonical_url differs from their own normalized URL are looked at (a declared
    canonical); the texts under the same canonical (reports, the page's own fetches in the batch, and
    the batch's declaring rows trusted before it) must share ``rules.revision_overlap`` of their
    shingles, as an updated article does.
    """
    cur.execute(_SHARED_CANONICALS)
    declared = [(int(e), str(u), str(c)) for e, u, c in cur.fetchall() if canonical_url(str(u)) != c]
    if not declared:
        return
    canonicals = sorted({c for _, _, c in declared})
    text_of: dict[int, str] = {}
    claims: dict[str, list[set[tuple[str, ...]]]] = {}
    cur.execute("SELECT m.entry_id, m.url, m.canonical_url, s.text FROM merge_rows m JOIN staged_reports s USING (entry_id)"
                " WHERE m.canonical_url = ANY(%s) ORDER BY m.ord", (canonicals,))
    for entry_id, url, canonical, text in cur.fetchall():
        text_of[int(entry_id)] = str(text)
        if canonical_url(str(url)) == canonical:  # the page itself, under its own URL: its claim comes first
            claims.setdefault(str(canonical), []).append(dedup.shingle_set(str(text)))
    cur.execute("SELECT canonical_url, text FROM reports WHERE canonical_url = ANY(%s)", (canonicals,))
    for canonical, text in cur.fetchall():
        claims.setdefault(str(canonical), []).append(dedup.shingle_set(str(text)))
    distrusted: list[tuple[int, str]] = []
    for entry_id, url, canonical in declared:
        mine = dedup.shingle_set(text_of[entry_id])
        others = claims.setdefault(canonical, [])
        if any(dedup.compare(mine, other).containment < rules.revision_overlap for other in others):
            own = canonical_url(url)
            distrusted.append((entry_id, own))
            log.warning("url=%s declares canonical %s, which unrelated text also declares: keeping its own URL %s",
                        url, canonical, own)
        else:
            others.append(mine)
    if distrusted:
        cur.execute(
            "UPDATE merge_rows m SET canonical_url = d.own FROM unnest(%s::bigint[], %s::text[]) AS d(entry_id, own)"
            " WHERE m.entry_id = d.entry_id",
            ([e for e, _ in distrusted], [o for _, o in distrusted]),
        )


def reindex_bands(conn: psycopg.Connection, *, rebuild: bool = False, chunk: int = 2000) -> int:
    """Index the reports that have no LSH bands (loaded before the near-duplicate layer existed).

    With ``rebuild``, every report's bands are recomputed from its text (after a change of the band
    layout in sitrep.dedup): the index is derived data, rebuilt from the reports. Runs under LOAD_LOCK
    in one transaction, so loaders wait and never see a half-built index. Returns the reports indexed.
    """
    done = 0
    with conn.transaction():
        take_load_lock(conn)
        if rebuild:
            conn.execute("TRUNCATE story_bands")
        with conn.cursor(name="sitrep_reindex") as rows, conn.cursor() as cur:
            rows.itersize = chunk
            rows.execute("SELECT report_id, text FROM reports r"
                         " WHERE NOT EXISTS (SELECT 1 FROM story_bands b WHERE b.report_id = r.report_id)")
            while batch := rows.fetchmany(chunk):
                with cur.copy("COPY story_bands (band, hash, report_id) FROM STDIN") as copy:
                    for report_id, text in batch:
                        for band, key in dedup.split_keys(dedup.band_keys(str(text))):
                            copy.write_row((band, key, report_id))
                done += len(batch)
                log.info("indexed %d report(s) for near-duplicate lookups", done)
    return done
