"""Re-extract stored pages (after an upgrade or a settings change) without fetching them again.

Every fetched page is kept compressed in ``pages`` (``store.page_body`` decodes it). Re-extraction
runs the same ``build_report`` as the collect step on those bytes, stages the results and merges them
with ``store.load_staged``, which already does what a re-extraction needs: a report whose text
changed becomes a new revision (revision + 1, a new ``ingest_seq``, so incremental readers see it
again), a report whose text did not change is left alone, and a page that failed before and now
yields text is loaded as a new report.

Which pages: the page each report's text came from (``reports.page_id``), and the pages of entries
whose extraction failed. Pages of aliases (the same article under another URL) are not re-extracted:
they hold the same article as their report's page.

A page that fails now but had a report keeps its report (a regression of the extractor must not
delete data); it is logged and counted, and ``extraction_log`` records it (flagged ``reextract``, so
that it does not move the per-source health figures of live ingestion).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from sitrep import db, extract_health, store
from sitrep.errors import ConfigError
from sitrep.pipeline import build_reports
from sitrep.records import PageJob, Rejected, Report
from sitrep.settings import Settings

__all__ = ["ReextractResult", "parse_since", "reextract", "resolve_source"]

log = logging.getLogger(__name__)

#: Pages per round trip: bounds the memory of one round (pages are up to the fetch size cap).
CHUNK = 200

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass
class ReextractResult:
    pages: int = 0
    changed: int = 0
    unchanged: int = 0
    recovered: int = 0
    failed: int = 0


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``2024-06-01``, ``2024-06-01T12:00+03:00`` or a span back from now (``90m``, ``24h``, ``7d``, ``2w``)."""
    if value is None:
        return None
    raw = value.strip()
    match = _RELATIVE.match(raw.lower())
    if match:
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: int(match[1])})
        except (OverflowError, ValueError):  # 1000000d: before the year 1
            raise ConfigError(f"--since {value!r} reaches back before any date: give a shorter span or a date") from None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {value!r} is not a date: use YYYY-MM-DD, an ISO timestamp, or a span such as 24h or 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def resolve_source(conn: psycopg.Connection, source: str | None) -> int | None:
    """A source by id, name, feed URL or host; ConfigError naming the choices when none or several match."""
    if source is None:
        return None
    rows = conn.execute(
        "SELECT source_id, name FROM sources WHERE source_id::text = %(s)s OR name = %(s)s OR feed_url = %(s)s"
        " OR host = %(s)s ORDER BY source_id",
        {"s": source.strip()},
    ).fetchall()
    if len(rows) == 1:
        return int(rows[0][0])
    if not rows:
        raise ConfigError(f"no source matches {source!r}: give its id, name, feed URL or host (see `sitrep feeds list`)")
    names = ", ".join(f"{sid} ({name})" for sid, name in rows)
    raise ConfigError(f"{source!r} matches several sources: {names}; give the id instead")


_PAGE_IDS = """
SELECT p.page_id
FROM pages p JOIN entries e USING (entry_id)
WHERE (%(since)s::timestamptz IS NULL OR p.fetched_at >= %(since)s)
  AND (%(source)s::bigint IS NULL OR e.source_id = %(source)s)
  AND (e.status = 'failed' OR EXISTS (SELECT 1 FROM reports r WHERE r.page_id = p.page_id))
ORDER BY p.page_id
"""

#: A page's time is when its report was last seen unchanged, if later (a fetch of its AMP copy, say):
#: the loader revises a report only from a fetch newer than that, and a re-extraction is the newest.
_PAGES = """
SELECT p.page_id, e.entry_id, e.source_id, e.link, p.url, p.final_url, greatest(p.fetched_at, c.checked_at), p.body_zlib,
       e.title, e.summary, e.content, e.author, e.published_at, e.status
FROM pages p JOIN entries e USING (entry_id)
LEFT JOIN (SELECT page_id, max(checked_at) AS checked_at FROM reports WHERE page_id = ANY(%(pages)s)
           GROUP BY page_id) c USING (page_id)  -- one pass over reports for the chunk, not one per page
WHERE p.page_id = ANY(%(pages)s)
ORDER BY p.page_id
"""


def reextract(settings: Settings, conn: psycopg.Connection, *, since: datetime | None = None,
              source_id: int | None = None, progress: Callable[[int, int], None] | None = None) -> ReextractResult:
    """Re-extract the stored pages fetched since ``since`` of one source (or all); see the module doc."""
    with db.autocommit(conn):  # each chunk commits by itself
        page_ids = [int(r[0]) for r in conn.execute(_PAGE_IDS, {"since": since, "source": source_id}).fetchall()]
        result = ReextractResult(pages=len(page_ids))
        for start in range(0, len(page_ids), CHUNK):
            _round(settings, conn, page_ids[start:start + CHUNK], result)
            if progress is not None:
                progress(min(start + CHUNK, len(page_ids)), len(page_ids))
    log.info("re-extracted %d pages: %d changed, %d unchanged, %d recovered, %d failed", result.pages,
             result.changed, result.unchanged, result.recovered, result.failed)
    return result


def _round(settings: Settings, conn: psycopg.Connection, page_ids: list[int], result: ReextractResult) -> None:
    rows = conn.execute(_PAGES, {"pages": page_ids}).fetchall()
    jobs, status_of = [], {}
    for (page_id, entry_id, source_id, link, url, final_url, fetched_at, body, title, summary, content, author,
         published_at, status) in rows:
        status_of[int(entry_id)] = status
        jobs.append(PageJob(
            entry_id=int(entry_id), source_id=int(source_id), url=link or url, final_url=final_url,
            body=store.page_body(body), fetched_at=fetched_at, page_id=int(page_id), feed_title=title,
            feed_summary=summary, feed_content=content, feed_author=author, feed_published_at=published_at,
        ))
    built = build_reports(jobs, settings.worker_count, settings.extract)
    reports = [r for r in built if isinstance(r, Report)]
    for rejected in (r for r in built if isinstance(r, Rejected)):
        result.failed += 1
        kept = " (its report is kept)" if status_of.get(rejected.entry_id) != "failed" else ""
        log.warning("url=%s re-extraction failed%s: %s", rejected.url, kept, rejected.reason)
    sources = sorted({r.source_id for r in reports})
    # One transaction for the chunk: staged, merged and marked, or nothing (an interrupted re-extraction
    # left its rows staged, and the next scheduled load applied what the user had stopped).
    with conn.transaction():
        # The load lock before the entries' locks, as every load takes them: staging first and then
        # waiting for a load that waits for these entries was a deadlock.
        store.take_load_lock(conn)
        store.stage_reports(conn, reports)
        extract_health.record(conn, jobs, built, reextract=True)
        if not sources:
            return
        loaded = store.load_staged(conn, sources, rules=settings.dedup)
        # load_staged marks every merged entry as loaded (new) or duplicate (matched a report); an entry
        # that was already loaded and is matched to its own report again stays what it was.
        conn.execute(
            "UPDATE entries e SET status = prev.status FROM unnest(%s::bigint[], %s::text[]) AS prev(entry_id, status)"
            " WHERE e.entry_id = prev.entry_id AND prev.status IN ('loaded', 'duplicate') AND e.status <> prev.status",
            ([r.entry_id for r in reports], [status_of[r.entry_id] for r in reports]),
        )
    recovered = sum(1 for r in reports if status_of.get(r.entry_id) == "failed")
    result.changed += loaded.updated
    result.recovered += recovered
    result.unchanged += len(reports) - loaded.updated - recovered
