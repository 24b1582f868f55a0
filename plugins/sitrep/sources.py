"""Sources (feeds) and their entries: registering feeds, planning batches, recording polls.

Batches are shards of source ids grouped by host, so that one slow site stalls only its own batch and
per-host politeness holds inside one task.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sitrep.errors import ConfigError
from sitrep.netguard import url_host
from sitrep.normalize import MAX_URL_BYTES, http_url
from sitrep.records import FeedEntry, Source
from sitrep.settings import FetchSettings
from sitrep.yamlfile import read_yaml

__all__ = [
    "FeedHealth",
    "FeedSpec",
    "PollResult",
    "PolledSource",
    "add_feeds",
    "enable_feeds",
    "feed_health",
    "load_feed_file",
    "load_sources",
    "next_poll_delay",
    "plan_batches",
    "record_entries",
    "touch_poll",
    "validate_feed_url",
]

log = logging.getLogger(__name__)

FILES_SOURCE_URL = "file:"


@dataclass(frozen=True)
class PolledSource(Source):
    """A source as the poll step sees it: its validators plus its schedule and health."""

    revalidate: bool = False
    consecutive_failures: int = 0
    poll_interval_s: float = 600.0


@dataclass(frozen=True)
class FeedSpec:
    url: str
    name: str | None = None
    interval_minutes: int | None = None


def validate_feed_url(url: str) -> str:
    """An absolute http(s) URL with a host, or a ConfigError that says how to fix it."""
    url = url.strip()
    if not http_url(url):  # no scheme or host, a port out of range, credentials, longer than we store
        shown = url if len(url) <= 200 else url[:200] + "..."
        raise ConfigError(f"{shown!r} is not a feed URL: give an absolute http(s) URL such as https://example.com/rss.xml"
                          f" (a valid port, no user:password part, at most {MAX_URL_BYTES} bytes)")
    return url


#: Poll intervals we accept, in minutes: a minute to a week.
MAX_INTERVAL_MINUTES = 7 * 24 * 60


def validate_interval(value: object, what: str = "interval") -> int:
    """A poll interval in whole minutes, 1 to a week, or a ConfigError that says so."""
    minutes = None
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        minutes = int(value)
    if minutes is None or not 1 <= minutes <= MAX_INTERVAL_MINUTES:
        raise ConfigError(f"{what} {value!r} is not a poll interval: give whole minutes from 1 to {MAX_INTERVAL_MINUTES}")
    return minutes


def add_feeds(conn: psycopg.Connection, specs: Sequence[FeedSpec]) -> tuple[int, int]:
    """Register feeds (idempotent: a known URL is left as it is). Returns (added, already known)."""
    added = 0
    with conn.transaction():
        for spec in specs:
            url = validate_feed_url(spec.url)
            interval = 10 if spec.interval_minutes is None else validate_interval(spec.interval_minutes)
            row = conn.execute(
                """
                INSERT INTO sources (name, feed_url, host, poll_interval)
                VALUES (%s, %s, %s, make_interval(mins => %s))
                ON CONFLICT (feed_url) DO NOTHING RETURNING source_id
                """,
                (spec.name or url_host(url), url, url_host(url), interval),
            ).fetchone()
            added += row is not None
    return added, len(specs) - added


def load_feed_file(path: Path) -> list[FeedSpec]:
    """Read seeds/feeds.yaml: a list of {url, name, interval_minutes} (or of bare URLs)."""
    data = read_yaml(path, what="a feeds file", fix="give the path of a feeds YAML file such as seeds/feeds.yaml")
    items = data.get("feeds") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a list of feeds (or a 'feeds:' key holding one)")
    specs = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            specs.append(FeedSpec(url=validate_feed_url(item)))
        elif isinstance(item, dict) and item.get("url"):
            try:
                name = item.get("name")
                if name is not None and not isinstance(name, str | int | float):
                    raise ConfigError(f"'name' must be text, not {type(name).__name__}")
                interval = item.get("interval_minutes")
                specs.append(
                    FeedSpec(
                        url=validate_feed_url(str(item["url"])),
                        name=None if name is None else str(name),
                        interval_minutes=None if interval is None else validate_interval(interval, "interval_minutes"),
                    )
                )
            except ConfigError as exc:
                raise ConfigError(f"{path}: feed #{number}: {exc}") from None
        else:
            raise ConfigError(f"{path}: feed #{number} has no 'url'")
    return specs


def files_source(conn: psycopg.Connection) -> int:
    """The pseudo-source that reports loaded from local files belong to (never polled)."""
    row = conn.execute(
        """
        INSERT INTO sources (kind, name, feed_url, host, enabled)
        VALUES ('files', 'files', %s, '', false)
        ON CONFLICT (feed_url) DO UPDATE SET kind = 'files' RETURNING source_id
        """,
        (FILES_SOURCE_URL,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def plan_batches(conn: psycopg.Connection, *, due_only: bool, batch_size: int) -> list[list[int]]:
    """Enabled feeds (due ones only, for the schedule) in batches that keep each host together."""
    rows = conn.execute(
        """
        SELECT source_id, host FROM sources
        WHERE kind = 'feed' AND enabled AND (NOT %s OR next_poll_at <= now())
        ORDER BY host, source_id
        """,
        (due_only,),
    ).fetchall()
    by_host: dict[str, list[int]] = defaultdict(list)
    for source_id, host in rows:
        by_host[host].append(source_id)
    batches: list[list[int]] = []
    current: list[int] = []
    for ids in sorted(by_host.values(), key=len, reverse=True):
        if current and len(current) + len(ids) > batch_size:
            batches.append(current)
            current = []
        current.extend(ids)
    if current:
        batches.append(current)
    return batches


def load_sources(
    conn: psycopg.Connection, source_ids: Iterable[int], *, revalidate_after: timedelta | None = None,
    run_id: str | None = None,
) -> list[PolledSource]:
    """The batch's sources to poll, with their poll state: the enabled ones (an operator may have
    disabled one since the plan), less those polled in ``run_id`` already (by an earlier try of the
    task: a retry must not ask a feed again that said Retry-After, nor count its failure twice).

    ``revalidate`` is set on a source whose validators are still trusted but that has yielded
    nothing new, and not been checked, for ``revalidate_after``: it is polled unconditionally once.
    """
    rows = conn.execute(
        """
        SELECT source_id, name, feed_url, host, etag, last_modified, body_sha256, validators_trusted,
               validators_trusted AND (etag IS NOT NULL OR last_modified IS NOT NULL)
                   AND %(after)s::interval IS NOT NULL
                   AND coalesce(validators_checked_at, added_at) < now() - %(after)s::interval
                   AND coalesce(last_new_entry_at, added_at) < now() - %(after)s::interval,
               consecutive_failures, extract(epoch FROM poll_interval)::float8
        FROM sources s WHERE source_id = ANY(%(ids)s) AND enabled
            AND NOT EXISTS (SELECT 1 FROM poll_log l WHERE l.run_id = %(run)s AND l.source_id = s.source_id)
        ORDER BY source_id
        """,
        {"ids": list(source_ids), "after": revalidate_after, "run": run_id},
    ).fetchall()
    return [PolledSource(*row) for row in rows]


#: Times one entry is fetched again because its feed said it changed, and how long after its last
#: fetch at the soonest: a feed that writes the time of the poll into every item costs a few fetches
#: per article, not one per poll.
MAX_REVISITS = 5
REVISIT_AFTER = "30 minutes"


def record_entries(conn: psycopg.Connection, source_id: int, entries: Sequence[FeedEntry]) -> int:
    """Insert entries not seen before (by GUID, else link); return how many were new.

    A known entry whose feed item now carries a later updated (or published) date than when it was
    loaded goes back to pending (``revisits`` + 1), with the link the feed now gives: its page is
    fetched again, and a changed text becomes the report's next revision (at most MAX_REVISITS times,
    REVISIT_AFTER apart). Only an entry that loaded its own report ('loaded'): one taken for a copy of
    another site's report ('duplicate') would make that report's next revision of its own page.
    """
    if not entries:
        return 0
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_entries (entry_key text, link text, title text,"
            " summary text, content text, author text, published_at timestamptz, updated_at timestamptz)"
            " ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY incoming_entries (entry_key, link, title, summary, content, author, published_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for e in entries:
                copy.write_row(
                    (_nul(e.entry_key), _nul(e.link), _nul(e.title), _nul(e.summary), _nul(e.content),
                     _nul(e.author), e.published_at, e.updated_at)
                )
        cur.execute(
            """
            INSERT INTO entries (source_id, entry_key, link, title, summary, content, author, published_at,
                                 feed_updated_at)
            SELECT %s, entry_key, link, title, summary, content, author, published_at, updated_at
            FROM incoming_entries
            ON CONFLICT (source_id, entry_key) DO NOTHING
            """,
            (source_id,),
        )
        new = cur.rowcount
        _revisit_changed(cur, source_id)
        return new


def _revisit_changed(cur: psycopg.Cursor[Any], source_id: int) -> None:
    """Known entries whose feed date moved on: pending again to be fetched (see record_entries); those
    recorded before the date was kept take it without a fetch. Locked in entry order, as every writer
    of entries does (store.lock_entries)."""
    rows = cur.execute(
        """
        SELECT e.entry_id, e.feed_updated_at IS NOT NULL
        FROM entries e JOIN incoming_entries i USING (entry_key)
        WHERE e.source_id = %s AND i.updated_at IS NOT NULL
          AND (e.feed_updated_at IS NULL
               OR (i.updated_at > e.feed_updated_at AND e.status = 'loaded'
                   AND e.revisits < %s AND e.updated_at < now() - %s::interval))
        ORDER BY e.entry_id FOR NO KEY UPDATE OF e
        """,
        (source_id, MAX_REVISITS, REVISIT_AFTER),
    ).fetchall()
    changed = [entry_id for entry_id, known in rows if known]
    dated = [entry_id for entry_id, known in rows if not known]  # recorded before 0015: the date, no fetch
    if changed:
        cur.execute(
            """
            UPDATE entries e SET feed_updated_at = i.updated_at, link = i.link, title = i.title, summary = i.summary,
                   content = i.content, author = i.author, status = 'pending',
                   revisits = e.revisits + 1, attempts = 0, error = NULL, updated_at = now()
            FROM incoming_entries i
            WHERE e.source_id = %s AND e.entry_key = i.entry_key AND e.entry_id = ANY(%s)
            """,
            (source_id, changed),
        )
        log.info("source_id=%s: %d entries changed in the feed since they were loaded: fetched again",
                 source_id, len(changed))
    if dated:
        cur.execute(
            "UPDATE entries e SET feed_updated_at = i.updated_at FROM incoming_entries i"
            " WHERE e.source_id = %s AND e.entry_key = i.entry_key AND e.entry_id = ANY(%s)",
            (source_id, dated),
        )


def _nul(value: str | None) -> str | None:
    """PostgreSQL text refuses NUL bytes: drop them (they carry no meaning in feeds)."""
    return value.replace("\x00", "") if value else value


def mark_entries(
    conn: psycopg.Connection, outcomes: Sequence[tuple[int, str, str | None]], *, max_attempts: int = 3
) -> None:
    """Record (entry_id, status, error) for entries that produced no staged report.

    A ``retry`` outcome (a timeout, a 5xx) leaves the entry pending until it has failed max_attempts
    times; ``deferred`` (not tried: the collect's time ran out) leaves it pending without counting an
    attempt; ``failed`` and ``skipped`` are final, except for an entry fetched again because its feed
    said it changed (``revisits`` > 0): its report stands, and the entry is ``loaded`` again with the error.
    """
    if not outcomes:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            UPDATE entries SET attempts = attempts + CASE WHEN %(status)s = 'deferred' THEN 0 ELSE 1 END,
                error = %(error)s, updated_at = now(),
                status = CASE
                    WHEN %(status)s = 'deferred' THEN 'pending'
                    WHEN %(status)s = 'retry' AND attempts + 1 < %(max)s THEN 'pending'
                    WHEN revisits > 0 AND report_id IS NOT NULL THEN 'loaded'  -- a fetch again that failed: the report stands
                    WHEN %(status)s = 'retry' THEN 'failed'
                    ELSE %(status)s END
            WHERE entry_id = %(id)s AND status = 'pending'
            """,
            [{"id": i, "status": s, "error": e, "max": max_attempts} for i, s, e in sorted(outcomes, key=lambda o: o[0])],  # lock order
        )


@dataclass
class PollResult:
    """What one poll of one feed did: the row of poll_log and the update of its source."""

    status: int | None = None
    size: int = 0
    duration_ms: int = 0
    not_modified: bool = False  # HTTP 304
    unchanged: bool = False  # 200 with the same bytes as last time: not parsed
    parsed: bool = False
    seen: int = 0
    new: int = 0
    skipped: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    blocked: bool = False
    deferred: bool = False  # not polled: the poll's time (SITREP_POLL_BUDGET) ran out first
    conditional: bool = False  # validators were sent
    revalidation: bool = False  # an unconditional poll to test the validators
    distrust_validators: bool = False  # ...which showed that they hide changes
    retry_after: float | None = None
    attempts: int = 0
    redirects: int = 0
    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def next_poll_delay(
    interval: float, failures: int, *, retry_after: float | None = None, max_backoff: float, rng: random.Random | None = None
) -> float:
    """Seconds until the next poll: the interval when healthy; after ``failures`` consecutive
    failures, the interval doubled each time with +-20 %% jitter, capped; never sooner than Retry-After."""
    if failures <= 0:
        delay = interval
    else:
        delay = min(max_backoff, interval * 2 ** min(failures, 30) * (rng or random).uniform(0.8, 1.2))
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_backoff))
    return delay


def touch_poll(
    conn: psycopg.Connection,
    source: PolledSource,
    result: PollResult,
    *,
    run_id: str | None,
    settings: FetchSettings,
    rng: random.Random | None = None,
) -> None:
    """Record one poll in poll_log and update the source's schedule, health and validators.

    A failure backs the source off (capped, with jitter, at least Retry-After) and after
    ``settings.max_failures`` in a row disables it with the reason recorded.
    """
    failures = 0 if result.ok else source.consecutive_failures + 1
    delay = next_poll_delay(source.poll_interval_s, failures, retry_after=result.retry_after,
                            max_backoff=settings.max_backoff_minutes * 60, rng=rng)
    disable = not result.ok and settings.max_failures > 0 and failures >= settings.max_failures
    reason = None
    if disable:
        last = str(result.error)
        for prefix in (f"can't poll feed {source.feed_url!r}: ", f"can't fetch {source.feed_url!r}: "):
            last = last.removeprefix(prefix)  # the URL is beside the reason wherever it is shown
        reason = f"disabled after {failures} consecutive failed polls; last: {last}"
    if disable:
        log.warning("feed=%s url=%s %s", source.name, source.feed_url, reason)
    if result.distrust_validators:
        log.warning("feed=%s url=%s changed behind an unchanged ETag/Last-Modified: validators no longer sent",
                    source.name, source.feed_url)
    row = conn.execute(
        """
        UPDATE sources SET
            last_polled_at = now(), last_status = %(status)s, last_error = %(error)s,
            consecutive_failures = CASE WHEN %(ok)s THEN 0 ELSE consecutive_failures + 1 END,
            next_poll_at = CASE WHEN %(anchor)s AND next_poll_at BETWEEN now() - make_interval(secs => %(delay)s) AND now()
                                THEN next_poll_at ELSE now() END + make_interval(secs => %(delay)s),
            last_success_at = CASE WHEN %(ok)s THEN now() ELSE last_success_at END,
            validators_trusted = validators_trusted AND NOT %(distrust)s,
            validators_checked_at = CASE WHEN %(reval)s THEN now() ELSE validators_checked_at END,
            etag = CASE WHEN %(distrust)s THEN NULL WHEN %(ok)s AND NOT %(nm)s THEN %(etag)s ELSE etag END,
            last_modified = CASE WHEN %(distrust)s THEN NULL WHEN %(ok)s AND NOT %(nm)s THEN %(lm)s
                            ELSE last_modified END,
            body_sha256 = coalesce(%(sha)s, body_sha256),
            entries_seen = entries_seen + %(new)s,
            last_new_entry_at = CASE WHEN %(new)s > 0 THEN now() ELSE last_new_entry_at END,
            enabled = enabled AND NOT %(disable)s,
            disabled_reason = CASE WHEN %(disable)s THEN %(reason)s ELSE disabled_reason END,
            disabled_at = CASE WHEN %(disable)s THEN now() ELSE disabled_at END
        WHERE source_id = %(id)s
        RETURNING next_poll_at
        """,
        {
            "status": result.status, "error": result.error, "ok": result.ok, "nm": result.not_modified,
            "etag": result.etag, "lm": result.last_modified, "sha": result.body_sha256, "new": result.new,
            "delay": delay, "distrust": result.distrust_validators, "reval": result.revalidation,
            "disable": disable, "reason": reason, "id": source.source_id,
            # Healthy: from when it was due (at most an interval ago), so that a feed whose interval is the
            # schedule's is due again at the next tick, not seconds after it (polled every other run).
            "anchor": result.ok and result.retry_after is None,
        },
    ).fetchone()
    conn.execute(
        """
        INSERT INTO poll_log (source_id, run_id, http_status, bytes, duration_ms, not_modified, entries_seen,
                              new_entries, error, conditional, revalidation, unchanged, parsed, blocked, attempts,
                              redirects, entries_skipped, problems, retry_after, next_poll_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (source.source_id, run_id, result.status, result.size, result.duration_ms, result.not_modified, result.seen,
         result.new, result.error, result.conditional, result.revalidation, result.unchanged, result.parsed,
         result.blocked, result.attempts, result.redirects, result.skipped, Jsonb(result.problems),
         None if result.retry_after is None else int(result.retry_after), row[0] if row else None),
    )


@dataclass(frozen=True)
class FeedHealth:
    """One feed as `sitrep feeds list` and `sitrep stats` show it."""

    source_id: int
    name: str
    feed_url: str
    enabled: bool
    last_status: int | None
    failures: int
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    entries_seen: int
    last_new_entry_at: datetime | None
    problem: str | None
    validators_trusted: bool
    reports: int
    #: The feed's usual gap between entries (median of the last 30), when it has a history.
    rhythm: timedelta | None
    #: Polls succeed but nothing new arrived for longer than stale_factor x rhythm (and stale_min_hours).
    stale: bool

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.failures:
            return "failing"
        if self.stale:
            return "stale"
        return "ok" if self.last_status is not None else "new"


def feed_health(conn: psycopg.Connection, settings: FetchSettings, *, unhealthy_only: bool = False) -> list[FeedHealth]:
    """Every feed with its health; a feed is stale when it polls fine but yields nothing new for
    longer than its own rhythm allows (the silent failure users miss most)."""
    rows = conn.execute(
        """
        WITH recent AS (
            SELECT source_id, coalesce(published_at, seen_at) AS at,
                   row_number() OVER (PARTITION BY source_id ORDER BY coalesce(published_at, seen_at) DESC) AS rn
            FROM entries
        ), gaps AS (
            SELECT source_id, at - lag(at) OVER (PARTITION BY source_id ORDER BY at) AS gap
            FROM recent WHERE rn <= 31
        ), rhythm AS (
            SELECT source_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS rhythm
            FROM gaps WHERE gap IS NOT NULL GROUP BY source_id
        ), loaded AS (  -- one pass over reports, not one per feed (reports.source_id has no index of its own)
            SELECT source_id, count(*) AS reports FROM reports GROUP BY source_id
        ), health AS (
            SELECT s.*, r.rhythm, coalesce(l.reports, 0) AS reports,
                   s.enabled AND s.consecutive_failures = 0 AND s.last_success_at IS NOT NULL
                   AND now() - coalesce(s.last_new_entry_at, s.added_at)
                       > greatest(coalesce(r.rhythm, interval '0') * %(factor)s,
                                  make_interval(secs => %(min_s)s)) AS stale
            FROM sources s LEFT JOIN rhythm r USING (source_id) LEFT JOIN loaded l USING (source_id)
            WHERE s.kind = 'feed'
        )
        SELECT source_id, name, feed_url, enabled, last_status, consecutive_failures, last_polled_at, next_poll_at,
               entries_seen, last_new_entry_at, coalesce(disabled_reason, last_error), validators_trusted,
               reports, rhythm, stale
        FROM health
        WHERE NOT %(unhealthy)s OR NOT enabled OR consecutive_failures > 0 OR stale
        ORDER BY name, feed_url
        """,
        {"factor": settings.stale_factor, "min_s": settings.stale_min_hours * 3600, "unhealthy": unhealthy_only},
    ).fetchall()
    return [FeedHealth(*row) for row in rows]


def disable_feeds(conn: psycopg.Connection, urls: Sequence[str], reason: str) -> list[str]:
    """Take feeds off the schedule with the reason shown by `sitrep feeds list` (feeds-enable undoes it)."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE sources SET enabled = false, disabled_reason = %s, disabled_at = now()"
            " WHERE kind = 'feed' AND feed_url = ANY(%s) RETURNING feed_url",
            (reason, list(urls)),
        ).fetchall()
    return [r[0] for r in rows]


def enable_feeds(conn: psycopg.Connection, urls: Sequence[str] | None) -> list[str]:
    """Re-enable disabled feeds (all of them when ``urls`` is None), due at once, failures forgotten."""
    with conn.transaction():
        rows = conn.execute(
            """
            UPDATE sources SET enabled = true, consecutive_failures = 0, disabled_reason = NULL, disabled_at = NULL,
                               next_poll_at = now()
            WHERE kind = 'feed' AND NOT enabled AND (%(all)s OR feed_url = ANY(%(urls)s))
            RETURNING feed_url
            """,
            {"all": urls is None, "urls": list(urls or [])},
        ).fetchall()
    return [r[0] for r in rows]
