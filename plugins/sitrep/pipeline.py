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
import queue
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from sitrep import db, extract_health, feeds, sources, store
from sitrep.dedup import band_keys
from sitrep.enrich import enrich_report
from sitrep.errors import BlockedURLError, ConfigError, ExtractionError, FeedError, FetchError
from sitrep.extract import extract_page
from sitrep.fetch import PAGE_TYPES, Fetcher, Response
from sitrep.logctx import about_feed
from sitrep.metrics import Stages, page_step
from sitrep.netguard import without_credentials
from sitrep.normalize import canonical_url, http_url, to_report, url_fits
from sitrep.records import Extracted, PageJob, Rejected, Report
from sitrep.settings import ExtractSettings, Settings
from sitrep.workers import PageStream, run_pages

__all__ = ["FilesLoaded", "build_report", "collect_batch", "ingest_files", "load_batch", "plan", "poll_batch"]

log = logging.getLogger(__name__)

#: Below this many pages a batch is extracted in-process: a pool costs more than it saves.
_POOL_THRESHOLD = 6


def _connect(settings: Settings) -> psycopg.Connection:
    return db.connect_settings(settings)


def plan(settings: Settings, *, due_only: bool) -> list[list[int]]:
    with _connect(settings) as conn:
        return sources.plan_batches(conn, due_only=due_only, batch_size=settings.batch_sources)


# --------------------------------------------------------------------------------------------- poll


def poll_batch(settings: Settings, source_ids: Sequence[int], *, run_id: str | None = None) -> dict[str, int]:
    """Poll each feed of the batch; a failing feed is recorded and never fails the others.

    A 304, or a body whose hash has not changed, costs no parse (and so no page fetch later). Each
    feed's entries and its poll_log row commit together, so a re-run repeats nothing.
    """
    counts = dict.fromkeys(("feeds", "not_modified", "unchanged", "parsed", "failed", "blocked", "deferred", "entries",
                            "new", "revalidated", "distrusted"), 0)
    hours = settings.fetch.revalidate_after_hours
    stages, started = Stages(), time.perf_counter()
    not_after = time.monotonic() + settings.fetch.poll_budget
    with _connect(settings) as conn, db.autocommit(conn), Fetcher(settings.fetch, not_after=not_after, task="poll") as \
            fetcher, feeds.BoundedParser(settings.fetch.feed_parse_timeout) as parser:
        batch = sources.load_sources(conn, source_ids, revalidate_after=timedelta(hours=hours) if hours > 0 else None,
                                     run_id=run_id)
        if len(batch) < len(source_ids):
            log.info("%d of %d feeds not polled: disabled since the plan, or polled by this run already",
                     len(source_ids) - len(batch), len(source_ids))
        workers = max(1, min(settings.fetch.global_concurrency, len(batch)))
        # Each feed is parsed and recorded as soon as it (and the ones before it) arrived, while the rest
        # are still being fetched: the parsing hides behind the slowest feeds' network time.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sitrep-poll") as threads:
            polled = threads.map(lambda s: _poll_one(fetcher, s, settings), batch)
            for source, (result, response) in zip(batch, polled, strict=True):
                if result.deferred:  # still due: the next run polls it
                    log.warning("feed=%s url=%s not polled: %s", source.name, source.feed_url, result.error)
                    counts["deferred"] += 1
                    continue
                _record_poll(conn, parser, source, result, response, settings, run_id)
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


def _record_poll(conn: psycopg.Connection, parser: feeds.BoundedParser, source: sources.PolledSource,
                 result: sources.PollResult, response: Response | None, settings: Settings, run_id: str | None) -> None:
    """Parse a feed's new bytes and record its new entries with its poll_log row, in one transaction.

    Entries the database refuses (a value out of its range or limits: no known case left) roll back
    that feed's transaction alone: its poll is recorded as failed with the reason, the batch goes on.
    """
    try:
        with conn.transaction():
            if response is not None:  # new bytes: parse them and record the entries not seen before
                _record_entries(conn, parser, source, result, response, settings.fetch.max_feed_entries)
            sources.touch_poll(conn, source, result, run_id=run_id, settings=settings.fetch)
    except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
        log.exception("feed=%s url=%s entries refused by the database", source.name, source.feed_url)
        result.error = f"can't record the entries of feed {source.feed_url!r}: {str(exc).splitlines()[0]}"
        result.body_sha256, result.parsed, result.seen, result.new = None, False, 0, 0
        with conn.transaction():
            sources.touch_poll(conn, source, result, run_id=run_id, settings=settings.fetch)
    if result.error:
        log.warning("feed=%s url=%s poll failed: %s", source.name, source.feed_url, result.error)
    else:
        log.info("feed=%s url=%s status=%s entries=%d new=%d%s", source.name, source.feed_url,
                 result.status, result.seen, result.new,
                 " (not modified)" if result.not_modified else " (unchanged)" if result.unchanged else "")


def _record_entries(conn: psycopg.Connection, parser: feeds.BoundedParser, source: sources.PolledSource,
                    result: sources.PollResult, response: Response, limit: int) -> None:
    try:
        parsed = parser.parse(response.body, feed_url=response.final_url, content_type=response.headers.get("content-type"))
    except FeedError as exc:
        result.error = str(exc)
        result.body_sha256 = None  # parse it again next time, the error stays visible
        return
    result.parsed = True
    kept = feeds.newest(parsed.entries, limit)
    result.seen, result.skipped, result.problems = len(parsed.entries), parsed.skipped, dict(parsed.problems)
    if len(kept) < len(parsed.entries):
        result.problems["over_limit"] = len(parsed.entries) - len(kept)
        log.warning("feed=%s url=%s holds %d entries: only the newest %d recorded (SITREP_MAX_FEED_ENTRIES)",
                    source.name, source.feed_url, len(parsed.entries), limit)
    result.new = sources.record_entries(conn, source.source_id, kept)
    if parsed.bozo:
        log.info("feed=%s url=%s parsed with errors (recovered %d entries): %s",
                 source.name, source.feed_url, result.seen, parsed.bozo)


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
        with about_feed(source.name):
            response = fetcher.get(url, max_bytes=settings.fetch.max_feed_bytes, headers=headers)
    except FetchError as exc:
        result.error, result.blocked, result.deferred = str(exc), isinstance(exc, BlockedURLError), exc.reason == "deferred"
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
    feed: str = ""  # its source's name, for the log lines about its page
    revisit: bool = False  # its feed said it changed after it loaded: fetch it although its URL is known


def build_report(job: PageJob, options: ExtractSettings | None = None) -> Report | Rejected:
    """Extract, normalize and enrich one page: the CPU-bound part, run in worker processes.

    Top-level and picklable (with ``options``, through functools.partial) so that a pool can run it.
    """
    with page_step("extract"):
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
    with page_step("enrich"):
        enrich_report(report)  # relevance, event types, places, actors + evidence (lexicons in seeds/lexicons)
    with page_step("dedup"):
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


#: Pages staged per transaction while a batch streams through: memory stays bounded, progress shows,
#: and a task killed half-way keeps what it staged (the retry does only the rest).
STAGE_CHUNK = 200
#: Pages fetched and not yet staged, at most (about 11 MB of bodies per 100 pages of a news site).
_AHEAD = 4 * STAGE_CHUNK
#: A partial chunk is staged anyway after this many seconds (a slow site must not hold finished pages).
_STAGE_EVERY = 2.0


@dataclass
class _FetchPlan:
    to_fetch: list[_Pending]
    #: leader entry id -> entries whose link is the same page (tracking parameters and the like)
    followers: dict[int, list[_Pending]]
    outcomes: list[tuple[int, str, str | None]]
    known: int


def _pending_entries(conn: psycopg.Connection, source_ids: Sequence[int]) -> list[_Pending]:
    rows = conn.execute(
        """
        SELECT e.entry_id, e.source_id, e.link, e.title, e.summary, e.content, e.author, e.published_at, s.name,
               e.revisits > 0
        FROM entries e JOIN sources s USING (source_id)
        WHERE e.source_id = ANY(%s) AND e.status = 'pending'
          AND NOT EXISTS (SELECT 1 FROM staged_reports s WHERE s.entry_id = e.entry_id)
        ORDER BY e.entry_id
        """,
        (list(source_ids),),
    ).fetchall()
    return [_Pending(*row) for row in rows]


def _plan_fetches(conn: psycopg.Connection, pending: Sequence[_Pending]) -> _FetchPlan:
    """What to fetch: a link we already loaded (another feed, an earlier run) is an alias, closed
    here without a fetch; inside the batch, links that differ only by tracking parameters and the
    like are fetched once (the first one leads, the others follow its result)."""
    canon = {p.entry_id: canonical_url(p.link) for p in pending if p.link and http_url(p.link)}
    canon = {entry: url for entry, url in canon.items() if url_fits(url)}  # its spelling must fit too
    lookup = sorted({str(p.link) for p in pending if p.entry_id in canon} | set(canon.values()))
    known: dict[str, int] = dict(conn.execute(
        "SELECT url, report_id FROM report_urls WHERE url = ANY(%s)", (lookup,)
    ).fetchall()) if lookup else {}
    plan = _FetchPlan(to_fetch=[], followers={}, outcomes=[], known=0)
    aliases: list[tuple[int, int]] = []
    leaders: dict[str, _Pending] = {}
    for p in pending:
        if not p.link:
            plan.outcomes.append((p.entry_id, "skipped", "entry has no link"))
            continue
        if p.entry_id not in canon:  # recorded before the poll refused such links
            plan.outcomes.append((p.entry_id, "failed", f"link {without_credentials(p.link)[:200]!r} is not an http(s)"
                                                        " URL we can fetch and store (no user:password part)"))
            continue
        report_id = None if p.revisit else known.get(p.link) or known.get(canon[p.entry_id])
        if report_id is not None:
            aliases.append((p.entry_id, report_id))
        elif canon[p.entry_id] in leaders:
            plan.followers.setdefault(leaders[canon[p.entry_id]].entry_id, []).append(p)
        else:
            leaders[canon[p.entry_id]] = p
            plan.to_fetch.append(p)
    if aliases:
        with conn.transaction():
            store.lock_entries(conn, [e for e, _ in aliases])
            conn.execute(  # pending still: another run may have loaded it meanwhile (its report is this one)
                "UPDATE entries e SET status = 'duplicate', report_id = a.report_id, updated_at = now()"
                " FROM unnest(%s::bigint[], %s::bigint[]) AS a(entry_id, report_id)"
                " WHERE e.entry_id = a.entry_id AND e.status = 'pending'",
                ([e for e, _ in aliases], [r for _, r in aliases]),
            )
    plan.known = len(aliases)
    return plan


class _Stager:
    """The collect step's database side, in a thread of its own: fetched pages, built reports and
    outcomes are staged a chunk per transaction while fetching and extraction go on."""

    def __init__(self, conn: psycopg.Connection, stages: Stages, followers: dict[int, list[_Pending]],
                 room: threading.Semaphore, feed_of: dict[int, str] | None = None) -> None:
        self.conn, self.stages, self.followers, self.room = conn, stages, followers, room
        self.feed_of = feed_of or {}  # entry id -> its feed's name, for the log
        self.counts = {"staged": 0, "failed": 0, "retry": 0}
        self.error: BaseException | None = None
        #: ("page", (job, result)) or ("outcome", (entry id, status, error)); None ends the stream
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sitrep-stage", daemon=True)
        self._thread.start()

    def page(self, job: PageJob, result: Report | Rejected) -> None:
        self._queue.put(("page", (job, result)))

    def outcome(self, entry_id: int, status: str, error: str | None) -> None:
        self._queue.put(("outcome", (entry_id, status, error)))

    def close(self) -> None:
        """Stage what is left; raise what went wrong in the thread."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        pages: list[tuple[PageJob, Report | Rejected]] = []
        outcomes: list[tuple[int, str, str | None]] = []
        last = time.monotonic()
        done = False
        while not done:
            try:
                item = self._queue.get(timeout=_STAGE_EVERY)
            except queue.Empty:
                item = ("", ())
            if item is None:
                done = True
            elif item[0] == "page":
                pages.append(item[1])
            elif item[0] == "outcome":
                outcomes.append(item[1])
            due = len(pages) >= STAGE_CHUNK or (time.monotonic() - last >= _STAGE_EVERY and (pages or outcomes))
            if (due or done) and self.error is None:
                try:
                    self._flush(pages, outcomes)
                except BaseException as exc:  # noqa: BLE001 - raised again in the task's thread by close()
                    self.error = exc
                for _ in pages:
                    self.room.release()
                pages, outcomes, last = [], [], time.monotonic()
            elif self.error is not None:
                for _ in pages:
                    self.room.release()
                pages = []

    def _flush(self, pages: list[tuple[PageJob, Report | Rejected]], outcomes: list[tuple[int, str, str | None]]) -> None:
        if not pages and not outcomes:
            return
        touched = [job.entry_id for job, _ in pages] + [entry_id for entry_id, _, _ in outcomes] + \
            [f.entry_id for job, _ in pages for f in self.followers.get(job.entry_id, [])]
        with self.stages.time("stage", len(pages)), self.conn.transaction():
            store.lock_entries(self.conn, touched)  # all at once, in order: see lock_entries
            page_ids = store.store_pages(self.conn, [
                (job.entry_id, job.url, job.final_url, job.status, job.content_type, job.fetched_at, job.body,
                 hashlib.sha256(job.body).hexdigest())
                for job, _ in pages
            ])
            jobs = [replace(job, page_id=page_ids.get(job.entry_id)) for job, _ in pages]
            built = [replace(result, page_id=page_ids.get(result.entry_id)) if isinstance(result, Report) else result
                     for _, result in pages]
            reports: list[Report] = []
            for result in built:
                followers = self.followers.get(result.entry_id, [])
                if isinstance(result, Report):
                    reports.append(result)  # and the same article under its other URLs: aliases of it
                    reports += [replace(result, entry_id=f.entry_id, source_id=f.source_id, url=str(f.link))
                                for f in followers]  # each under its own source, whose load closes it
                else:
                    log.warning("feed=%s url=%s rejected: %s", self.feed_of.get(result.entry_id, "?"), result.url,
                                result.reason)
                    outcomes += [(result.entry_id, "failed", result.reason)]
                    outcomes += [(f.entry_id, "failed", result.reason) for f in followers]
            self.counts["staged"] += store.stage_reports(self.conn, reports)
            sources.mark_entries(self.conn, outcomes)
            extract_health.record(self.conn, jobs, built)
        self.counts["failed"] += sum(1 for _, status, _ in outcomes if status == "failed")
        self.counts["retry"] += sum(1 for _, status, _ in outcomes if status in {"retry", "deferred"})


def collect_batch(settings: Settings, source_ids: Sequence[int], *, run_id: str | None = None) -> dict[str, int]:
    """Fetch, extract and stage every pending entry of the batch's sources, as a stream: pages are
    fetched in threads, extracted in worker processes as they arrive, and staged a chunk at a time,
    so the network, the CPUs and the database work at the same time."""
    counts = {"pending": 0, "fetched": 0, "staged": 0, "failed": 0, "retry": 0, "known": 0}
    stages = Stages()
    # Autocommit: each chunk's transaction is its own commit (a killed task keeps what it staged).
    with _connect(settings) as conn, db.autocommit(conn):
        pending = _pending_entries(conn, source_ids)
        plan = _plan_fetches(conn, pending)
        counts.update(pending=len(pending), known=plan.known)
        room = threading.BoundedSemaphore(_AHEAD)
        stager = _Stager(conn, stages, plan.followers, room, {p.entry_id: p.feed for p in pending})
        for outcome in plan.outcomes:
            stager.outcome(*outcome)
        try:
            if plan.to_fetch:
                counts["fetched"] = _fetch_and_extract(settings, plan, stager, room, stages)
        finally:
            stager.close()
        counts.update(stager.counts)
        stages.record(conn, run_id=run_id, task="collect", source_ids=source_ids)
    return counts


def _fetch_and_extract(settings: Settings, plan: _FetchPlan, stager: _Stager, room: threading.Semaphore,
                       stages: Stages) -> int:
    """Fetch threads feed the extraction workers; results go to the stager. Returns pages fetched."""
    fetched = 0
    stop = threading.Event()
    trouble: list[BaseException] = []

    def feed(stream: PageStream) -> None:
        nonlocal fetched
        links = [str(p.link) for p in plan.to_fetch]
        try:
            with Fetcher(settings.fetch, not_after=time.monotonic() + settings.fetch.collect_budget) as fetcher:
                for index, response, seconds in fetcher.iter_many(links, feeds=[p.feed for p in plan.to_fetch]):
                    stages.add("fetch", seconds, 1)
                    p = plan.to_fetch[index]
                    status, problem = _fetch_outcome(response)
                    if problem is not None:
                        log.warning("feed=%s url=%s %s: %s", p.feed, p.link,
                                    "left for the next run" if status == "deferred" else "not fetched", problem)
                        stager.outcome(p.entry_id, status, problem)
                        for follower in plan.followers.get(p.entry_id, []):
                            stager.outcome(follower.entry_id, status, problem)
                        continue
                    assert isinstance(response, Response)
                    while not room.acquire(timeout=0.5):  # bounded: extraction is slower than loopback
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    fetched += 1
                    stream.put(PageJob(
                        entry_id=p.entry_id, source_id=p.source_id, url=str(p.link), final_url=response.final_url,
                        body=response.body, fetched_at=response.fetched_at, feed_title=p.title,
                        feed_summary=p.summary, feed_content=p.content, feed_author=p.author,
                        feed_published_at=p.published_at, status=response.status,
                        content_type=response.content_type,
                    ))
        except BaseException as exc:  # noqa: BLE001 - raised again in the task's thread
            trouble.append(exc)
        finally:
            stream.close_input()

    with PageStream(settings.worker_count, settings.extract) as stream:
        feeder = threading.Thread(target=feed, args=(stream,), name="sitrep-fetch-feed", daemon=True)
        feeder.start()
        try:
            for job, result, seconds in stream.results():
                for step, cpu in seconds.items():
                    stages.add(step, cpu, 1 if step == "extract" else 0)
                stager.page(job, result)
                if stager.error is not None:
                    break
        finally:
            stop.set()
            feeder.join()
    if trouble:
        raise trouble[0]
    return fetched


def _fetch_outcome(response: Response | FetchError) -> tuple[str, str | None]:
    """(status, problem) of a fetched page: no problem means extract it."""
    if isinstance(response, FetchError):
        if response.reason == "deferred":
            return "deferred", str(response)  # not tried: pending, no attempt counted
        return ("retry" if response.reason in {"timeout", "connect", "unexpected"} else "failed"), str(response)
    problem = _page_problem(response)
    if problem:
        return ("retry" if response.status in {429, 500, 502, 503, 504} else "failed"), problem
    return "", None


def _page_problem(response: Response) -> str | None:
    if response.status >= 400:
        return f"HTTP {response.status}"
    if response.truncated:
        return f"page larger than the size cap ({len(response.body)} bytes kept)"
    if response.content_type not in PAGE_TYPES:
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


@dataclass
class FilesLoaded:
    """What ``ingest_files`` did: counts by outcome, and each file not loaded with the reason."""

    counts: dict[str, int]
    not_loaded: list[tuple[Path, str]] = field(default_factory=list)


def ingest_files(settings: Settings, paths: Sequence[Path]) -> FilesLoaded:
    """Load seed-format text files as reports, through the same staging and merge as feeds."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.txt") if p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    files = list(dict.fromkeys(p.resolve() for p in files))  # a folder and a file in it, a.txt and ./a.txt: once
    counts = {"files": len(files), "inserted": 0, "updated": 0, "aliased": 0, "failed": 0, "loaded before": 0}
    result = FilesLoaded(counts)
    cap = settings.fetch.max_page_bytes
    for path in [p for p in files if p.stat().st_size > cap]:
        reason = f"{path.stat().st_size} bytes, over the {cap} of SITREP_MAX_PAGE_BYTES"
        log.warning("file=%s not loaded: %s", path, reason)
        result.not_loaded.append((path, reason))
        files.remove(path)
        counts["failed"] += 1
    if not files:
        return result
    now = datetime.now(UTC)
    with _connect(settings) as conn:
        with conn.transaction():
            source_id = sources.files_source(conn)
        jobs: list[PageJob] = []
        path_of: dict[int, Path] = {}
        for path in files:
            day, text = parse_seed_file(path)
            url = path.resolve().as_uri()
            key = f"{url}#{hashlib.sha256(text.encode()).hexdigest()[:16]}"
            with conn.transaction():
                row = conn.execute(
                    """
                    INSERT INTO entries (source_id, entry_key, link) VALUES (%s, %s, %s)
                    ON CONFLICT (source_id, entry_key) DO UPDATE SET updated_at = now()
                    RETURNING entry_id, status, error
                    """,
                    (source_id, key, url),
                ).fetchone()
            assert row is not None
            if row[1] == "failed":  # the same text failed before: it fails again, for the same reason
                counts["failed"] += 1
                result.not_loaded.append((path, f"{row[2] or 'failed'} (as when it was first given)"))
                continue
            if row[1] != "pending":
                counts["loaded before"] += 1
                continue
            path_of[int(row[0])] = path
            jobs.append(PageJob(
                entry_id=int(row[0]), source_id=source_id, url=url, final_url=url, body=b"", fetched_at=now,
                plain_text=text,
                plain_date=datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None,
            ))
        started = time.monotonic()
        built = build_reports(jobs, settings.worker_count, settings.extract)
        reports = [r for r in built if isinstance(r, Report)]
        rejected = [(r.entry_id, "failed", r.reason) for r in built if isinstance(r, Rejected)]
        for entry_id, _, reason in rejected:
            log.warning("file=%s not loaded: %s", path_of[entry_id], reason)
            result.not_loaded.append((path_of[entry_id], reason))
        with conn.transaction():
            store.lock_entries(conn, [job.entry_id for job in jobs])  # all at once, in order: see lock_entries
            store.stage_reports(conn, reports)
            sources.mark_entries(conn, rejected)
        loaded = store.load_staged(conn, [source_id], rules=settings.dedup)
        log.info("loaded %d files in %.1fs", len(files), time.monotonic() - started)
    counts.update(inserted=loaded.inserted, updated=loaded.updated, aliased=loaded.aliased,
                  failed=counts["failed"] + len(rejected))  # the files over the size cap, and those that failed here
    return result
