"""The ingestion steps the DAG calls, one function per task, each a transaction that can be re-run.

    plan()            -> batches of source ids (sharded by host)
    poll_batch(ids)   -> feeds fetched (conditionally) and parsed; new entries recorded
    collect_batch(ids)-> pending entries' pages fetched, extracted, normalized; staged in Postgres
    load_batch(ids)   -> staged reports merged into reports (exact dedup), entries closed

Only ids and counts cross task boundaries (XCom); pages and reports move through Postgres. A task
killed at any point leaves entries pending, and the retry picks them up: nothing lost, nothing twice.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from sitrep import db, extract_health, feeds, sources, store
from sitrep.dedup import band_keys
from sitrep.enrich import enrich_report
from sitrep.errors import BlockedURLError, ConfigError, ExtractionError, FeedError, FetchError
from sitrep.extract import extract_page
from sitrep.fetch import Fetcher, Response
from sitrep.metrics import Stages
from sitrep.normalize import canonical_url, to_report
from sitrep.records import Extracted, PageJob, Rejected, Report
from sitrep.settings import ExtractSettings, Settings
from sitrep.workers import run_pages

__all__ = ["build_report", "collect_batch", "ingest_files", "load_batch", "plan", "poll_batch"]

log = logging.getLogger(__name__)

#: Below this many pages a batch is extracted in-process: a pool costs more than it saves.
_POOL_THRESHOLD = 6


def _connect(settings: Settings) -> psycopg.Connection:
    return db.connect(db.database_url(settings), statement_timeout_ms=settings.statement_timeout_ms)


def plan(settings: Settings, *, due_only: bool) -> list[list[int]]:
    with _connect(settings) as conn:
        return sources.plan_batches(conn, due_only=due_only, batch_size=settings.batch_sources)


# --------------------------------------------------------------------------------------------- poll


def poll_batch(settings: Settings, source_ids: Sequence[int], *, run_id: str | None = None) -> dict[str, int]:
    """Poll each feed of the batch; a failing feed is recorded and never fails the others.

    A 304, or a body whose hash has not changed, costs no parse (and so no page fetch later). Each
    feed's entries and its poll_log row commit together, so a re-run repeats nothing.
    """
    counts = dict.fromkeys(("feeds", "not_modified", "unchanged", "parsed", "failed", "blocked", "entries", "new",
                            "revalidated", "distrusted"), 0)
    hours = settings.fetch.revalidate_after_hours
    stages, started = Stages(), time.perf_counter()
    with _connect(settings) as conn, Fetcher(settings.fetch) as fetcher:
        batch = sources.load_sources(conn, source_ids, revalidate_after=timedelta(hours=hours) if hours > 0 else None)
        conn.commit()
        workers = max(1, min(settings.fetch.global_concurrency, len(batch)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sitrep-poll") as threads:
            polled = list(threads.map(lambda s: _poll_one(fetcher, s, settings), batch))
        for source, (result, response) in zip(batch, polled, strict=True):
            with conn.transaction():
                if response is not None:  # new bytes: parse them and record the entries not seen before
                    try:
                        parsed = feeds.parse_feed(response.body, feed_url=response.final_url,
                                                  content_type=response.headers.get("content-type"))
                    except FeedError as exc:
                        result.error = str(exc)
                        result.body_sha256 = None  # parse it again next time, the error stays visible
                    else:
                        result.parsed = True
                        result.seen, result.skipped, result.problems = (len(parsed.entries), parsed.skipped,
                                                                        parsed.problems)
                        result.new = sources.record_entries(conn, source.source_id, parsed.entries)
                        if parsed.bozo:
                            log.info("feed=%s url=%s parsed with errors (recovered %d entries): %s",
                                     source.name, source.feed_url, result.seen, parsed.bozo)
                sources.touch_poll(conn, source, result, run_id=run_id, settings=settings.fetch)
            if result.error:
                log.warning("feed=%s url=%s poll failed: %s", source.name, source.feed_url, result.error)
            else:
                log.info("feed=%s url=%s status=%s entries=%d new=%d%s", source.name, source.feed_url,
                         result.status, result.seen, result.new,
                         " (not modified)" if result.not_modified else " (unchanged)" if result.unchanged else "")
            for key, flag in (("not_modified", result.not_modified), ("unchanged", result.unchanged),
                              ("parsed", result.parsed), ("failed", not result.ok), ("blocked", result.blocked),
                              ("revalidated", result.revalidation), ("distrusted", result.distrust_validators)):
                counts[key] += bool(flag)
            counts["feeds"] += 1
            counts["entries"] += result.seen
            counts["new"] += result.new
        counts["requests"] = fetcher.stats.get("requests", 0)
        stages.seconds["poll"] = time.perf_counter() - started
        stages.items["poll"] = counts["feeds"]
        stages.record(conn, run_id=run_id, task="poll", source_ids=source_ids)
    return counts


def _poll_one(fetcher: Fetcher, source: sources.PolledSource, settings: Settings) -> tuple[sources.PollResult, Response | None]:
    """Fetch one feed (conditionally, unless its validators are distrusted or due a check).

    Returns the poll's result and, only when the body is new bytes to parse, the response.
    """
    result = sources.PollResult(revalidation=source.revalidate)
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if source.validators_trusted and not source.revalidate:
        if source.etag:
            headers["If-None-Match"] = source.etag
        if source.last_modified:
            headers["If-Modified-Since"] = source.last_modified
        result.conditional = len(headers) > 1
    url = source.feed_url
    try:
        response = fetcher.get(url, max_bytes=settings.fetch.max_feed_bytes, headers=headers)
    except FetchError as exc:
        result.error, result.blocked = str(exc), isinstance(exc, BlockedURLError)
        return result, None
    result.status, result.size, result.duration_ms = response.status, len(response.body), int(response.elapsed * 1000)
    result.attempts, result.redirects = response.attempts, response.redirects
    if response.status >= 400:
        if response.status in {429, 503}:
            result.retry_after = response.retry_after
        wait = f" (Retry-After {result.retry_after:.0f}s: next poll pushed back)" if result.retry_after else ""
        tries = f" after {response.attempts} tries" if response.attempts > 1 else ""
        result.error = f"can't poll feed {url!r}: HTTP {response.status}{tries}{wait}"
        return result, None
    if response.not_modified:
        result.not_modified = True
        return result, None
    if response.truncated:
        result.error = f"can't poll feed {url!r}: larger than {settings.fetch.max_feed_bytes} bytes (SITREP_MAX_FEED_BYTES)"
        return result, None
    result.etag, result.last_modified = response.headers.get("etag"), response.headers.get("last-modified")
    result.body_sha256 = hashlib.sha256(response.body).hexdigest()
    if result.body_sha256 == source.body_sha256:
        result.unchanged = True  # the same bytes as last time: nothing to parse
        return result, None
    if source.revalidate and source.body_sha256 is not None:
        # The body changed while the server kept the validators we would have sent: a conditional
        # poll would have been told "304", so the validators hide changes.
        same_etag = bool(source.etag) and result.etag == source.etag
        same_date = not source.etag and bool(source.last_modified) and result.last_modified == source.last_modified
        result.distrust_validators = same_etag or same_date
    return result, response


# ------------------------------------------------------------------------------------------ collect


@dataclass(frozen=True)
class _Pending:
    entry_id: int
    source_id: int
    link: str | None
    title: str | None
    summary: str | None
    content: str | None
    author: str | None
    published_at: datetime | None


def build_report(job: PageJob, options: ExtractSettings | None = None) -> Report | Rejected:
    """Extract, normalize and enrich one page: the CPU-bound part, run in worker processes.

    Top-level and picklable (with ``options``, through functools.partial) so that a pool can run it.
    """
    try:
        if job.plain_text is not None:
            extracted = Extracted(text=job.plain_text, method="file", title=_first_line_title(job.plain_text))
        else:
            extracted = extract_page(job.body, job.final_url, options=options, feed_content=job.feed_content,
                                     feed_summary=job.feed_summary)
    except ExtractionError as exc:
        return Rejected(job.entry_id, job.url, str(exc))
    report = to_report(job, extracted)
    if job.plain_date is not None:
        report.published_at, report.published_at_source = job.plain_date, "article"
    if not report.text:
        return Rejected(job.entry_id, job.url, f"no text left in {job.url!r} after normalization")
    enrich_report(report)  # relevance, event types, places, actors + evidence (lexicons in seeds/lexicons)
    report.minhash = band_keys(report.text)  # near-duplicate keys, here because workers use every core
    return report


def build_reports(jobs: Sequence[PageJob], workers: int, options: ExtractSettings | None = None) -> list[Report | Rejected]:
    """build_report over many jobs, in killable worker processes (sitrep.workers: per-page timeout,
    memory cap); a page that hangs or exhausts its worker becomes a Rejected and the batch goes on.

    A few plain-text files (no HTML to parse, nothing to hang on) are built in-process.
    """
    build = functools.partial(build_report, options=options)
    if all(job.plain_text is not None for job in jobs) and (len(jobs) < _POOL_THRESHOLD or workers <= 1):
        return [build(job) for job in jobs]
    return run_pages(jobs, workers, options, build=build)


def _first_line_title(text: str, limit: int = 160) -> str | None:
    """A title for a plain-text input, which has none: its first sentence (or line), cut at a word."""
    first = text.strip().split("\n", 1)[0].strip()
    sentence = re.split(r"(?<=[.!?])\s+", first, maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + "…"


def collect_batch(settings: Settings, source_ids: Sequence[int], *, run_id: str | None = None) -> dict[str, int]:
    """Fetch, extract and stage every pending entry of the batch's sources."""
    counts = {"pending": 0, "fetched": 0, "staged": 0, "failed": 0, "known": 0}
    stages = Stages()
    with _connect(settings) as conn:
        rows = conn.execute(
            """
            SELECT e.entry_id, e.source_id, e.link, e.title, e.summary, e.content, e.author, e.published_at
            FROM entries e
            WHERE e.source_id = ANY(%s) AND e.status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM staged_reports s WHERE s.entry_id = e.entry_id)
            ORDER BY e.entry_id
            """,
            (list(source_ids),),
        ).fetchall()
        pending = [_Pending(*row) for row in rows]
        counts["pending"] = len(pending)
        outcomes: list[tuple[int, str, str | None]] = []
        # A link we already loaded (another feed, an earlier run) is an alias: no fetch needed. Inside
        # the batch, links that differ only by tracking parameters and the like are fetched once.
        canon = {p.entry_id: canonical_url(p.link) for p in pending if p.link}
        lookup = sorted({p.link for p in pending if p.link} | set(canon.values()))
        known = dict(conn.execute(
            "SELECT url, report_id FROM report_urls WHERE url = ANY(%s)", (lookup,)
        ).fetchall()) if lookup else {}
        to_fetch: list[_Pending] = []
        leaders: dict[str, _Pending] = {}
        followers: list[tuple[_Pending, _Pending]] = []
        for p in pending:
            if not p.link:
                outcomes.append((p.entry_id, "skipped", "entry has no link"))
                continue
            report_id = known.get(p.link) or known.get(canon[p.entry_id])
            if report_id is not None:
                counts["known"] += 1
                conn.execute(
                    "UPDATE entries SET status = 'duplicate', report_id = %s, updated_at = now() WHERE entry_id = %s",
                    (report_id, p.entry_id),
                )
            elif canon[p.entry_id] in leaders:
                followers.append((p, leaders[canon[p.entry_id]]))
            else:
                leaders[canon[p.entry_id]] = p
                to_fetch.append(p)
        conn.commit()

        with stages.time("fetch", len(to_fetch)), Fetcher(settings.fetch) as fetcher:
            responses = fetcher.get_many([p.link for p in to_fetch if p.link])
        jobs: list[PageJob] = []
        raw_pages = []
        for p, response in zip(to_fetch, responses, strict=True):
            assert p.link is not None
            if isinstance(response, FetchError):
                outcomes.append((p.entry_id, "retry" if response.reason in {"timeout", "connect"} else "failed", str(response)))
                continue
            problem = _page_problem(response)
            if problem:
                status = "retry" if response.status in {429, 500, 502, 503, 504} else "failed"
                outcomes.append((p.entry_id, status, problem))
                log.warning("url=%s skipped: %s", p.link, problem)
                continue
            counts["fetched"] += 1
            raw_pages.append((p.entry_id, p.link, response.final_url, response.status, response.content_type,
                              response.fetched_at, response.body, hashlib.sha256(response.body).hexdigest()))
            jobs.append(PageJob(
                entry_id=p.entry_id, source_id=p.source_id, url=p.link, final_url=response.final_url,
                body=response.body, fetched_at=response.fetched_at, feed_title=p.title, feed_summary=p.summary,
                feed_content=p.content, feed_author=p.author, feed_published_at=p.published_at,
            ))
        with stages.time("stage", len(raw_pages)), conn.transaction():
            page_ids = store.store_pages(conn, raw_pages)
        jobs = [_with_page(job, page_ids.get(job.entry_id)) for job in jobs]
        with stages.time("extract", len(jobs)):
            built = build_reports(jobs, settings.worker_count, settings.extract)
        reports = [r for r in built if isinstance(r, Report)]
        by_entry = {r.entry_id: r for r in reports}
        for follower, leader in followers:  # same article under another URL: staged as an alias of it
            if leader.entry_id in by_entry:
                reports.append(replace(by_entry[leader.entry_id], entry_id=follower.entry_id, url=str(follower.link)))
        for r in built:
            if isinstance(r, Rejected):
                log.warning("url=%s rejected: %s", r.url, r.reason)
                outcomes.append((r.entry_id, "failed", r.reason))
        with stages.time("stage", len(reports)), conn.transaction():
            counts["staged"] = store.stage_reports(conn, reports)
            sources.mark_entries(conn, outcomes)
            extract_health.record(conn, jobs, built)
        counts["failed"] = sum(1 for _, status, _ in outcomes if status != "skipped")
        stages.record(conn, run_id=run_id, task="collect", source_ids=source_ids)
    return counts


def _with_page(job: PageJob, page_id: int | None) -> PageJob:
    return replace(job, page_id=page_id)


_HTML_TYPES = {"", "text/html", "application/xhtml+xml", "text/plain", "application/xml", "text/xml"}


def _page_problem(response: Response) -> str | None:
    if response.status >= 400:
        return f"HTTP {response.status}"
    if response.truncated:
        return f"page larger than the size cap ({len(response.body)} bytes kept)"
    if response.content_type not in _HTML_TYPES:
        return f"not an HTML page ({response.content_type})"
    if not response.body.strip():
        return "empty page"
    return None


# --------------------------------------------------------------------------------------------- load


def load_batch(settings: Settings, source_ids: Sequence[int], *, run_id: str | None = None) -> dict[str, int]:
    stages = Stages()
    with _connect(settings) as conn:
        with stages.time("load"):
            result = store.load_staged(conn, source_ids, rules=settings.dedup)
        stages.record(conn, run_id=run_id, task="load", source_ids=source_ids)
    return {"inserted": result.inserted, "updated": result.updated, "aliased": result.aliased}


# --------------------------------------------------------------------------------------------- files


def parse_seed_file(path: Path) -> tuple[date | None, str]:
    """A seed-format file: ``date YYYY-MM-DD <text>`` (the date line is optional)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; convert it (iconv -t utf-8) and load it again") from None
    except OSError as exc:
        raise ConfigError(f"{path}: can't read it ({exc.strerror})") from None
    text = raw.lstrip("\ufeff").strip()
    if text.startswith("date "):
        head, _, rest = text[5:].partition(" ")
        try:
            return date.fromisoformat(head.strip()), rest.strip()
        except ValueError:
            raise ConfigError(f"{path}: the first word after 'date' must be YYYY-MM-DD, not {head!r}") from None
    return None, text


def ingest_files(settings: Settings, paths: Sequence[Path]) -> dict[str, int]:
    """Load seed-format text files as reports, through the same staging and merge as feeds."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.txt") if p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    counts = {"files": len(files), "inserted": 0, "updated": 0, "aliased": 0, "failed": 0}
    if not files:
        return counts
    now = datetime.now(UTC)
    with _connect(settings) as conn:
        with conn.transaction():
            source_id = sources.files_source(conn)
        jobs: list[PageJob] = []
        for path in files:
            day, text = parse_seed_file(path)
            url = path.resolve().as_uri()
            key = f"{url}#{hashlib.sha256(text.encode()).hexdigest()[:16]}"
            with conn.transaction():
                row = conn.execute(
                    """
                    INSERT INTO entries (source_id, entry_key, link) VALUES (%s, %s, %s)
                    ON CONFLICT (source_id, entry_key) DO UPDATE SET updated_at = now()
                    RETURNING entry_id, status
                    """,
                    (source_id, key, url),
                ).fetchone()
            assert row is not None
            if row[1] != "pending":
                continue
            jobs.append(PageJob(
                entry_id=int(row[0]), source_id=source_id, url=url, final_url=url, body=b"", fetched_at=now,
                plain_text=text,
                plain_date=datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None,
            ))
        started = time.monotonic()
        built = build_reports(jobs, settings.worker_count, settings.extract)
        reports = [r for r in built if isinstance(r, Report)]
        rejected = [(r.entry_id, "failed", r.reason) for r in built if isinstance(r, Rejected)]
        with conn.transaction():
            store.stage_reports(conn, reports)
            sources.mark_entries(conn, rejected)
        result = store.load_staged(conn, [source_id], rules=settings.dedup)
        log.info("loaded %d files in %.1fs", len(files), time.monotonic() - started)
    counts.update(inserted=result.inserted, updated=result.updated, aliased=result.aliased, failed=len(rejected))
    return counts
