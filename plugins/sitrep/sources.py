"""Sources (feeds) and their entries: registering feeds, planning batches, recording polls.

Batches are shards of source ids grouped by host, so that one slow site stalls only its own batch and
per-host politeness holds inside one task.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import yaml

from sitrep.errors import ConfigError
from sitrep.records import FeedEntry, Source

__all__ = [
    "FeedSpec",
    "add_feeds",
    "load_feed_file",
    "load_sources",
    "plan_batches",
    "record_entries",
    "validate_feed_url",
]

log = logging.getLogger(__name__)

FILES_SOURCE_URL = "file:"


@dataclass(frozen=True)
class FeedSpec:
    url: str
    name: str | None = None
    interval_minutes: int | None = None


def validate_feed_url(url: str) -> str:
    """An absolute http(s) URL with a host, or a ConfigError that says how to fix it."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{url!r} is not a feed URL: give an absolute http(s) URL such as https://example.com/rss.xml")
    return url


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.lower()


def add_feeds(conn: psycopg.Connection, specs: Sequence[FeedSpec]) -> tuple[int, int]:
    """Register feeds (idempotent: a known URL is left as it is). Returns (added, already known)."""
    added = 0
    with conn.transaction():
        for spec in specs:
            url = validate_feed_url(spec.url)
            row = conn.execute(
                """
                INSERT INTO sources (name, feed_url, host, poll_interval)
                VALUES (%s, %s, %s, make_interval(mins => %s))
                ON CONFLICT (feed_url) DO NOTHING RETURNING source_id
                """,
                (spec.name or _host(url), url, _host(url), spec.interval_minutes or 10),
            ).fetchone()
            added += row is not None
    return added, len(specs) - added


def load_feed_file(path: Path) -> list[FeedSpec]:
    """Read seeds/feeds.yaml: a list of {url, name, interval_minutes} (or of bare URLs)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give the path of a feeds YAML file such as seeds/feeds.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file and import again") from None
    items = data.get("feeds") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a list of feeds (or a 'feeds:' key holding one)")
    specs = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            specs.append(FeedSpec(url=validate_feed_url(item)))
        elif isinstance(item, dict) and item.get("url"):
            try:
                specs.append(
                    FeedSpec(
                        url=validate_feed_url(str(item["url"])),
                        name=item.get("name"),
                        interval_minutes=int(item["interval_minutes"]) if item.get("interval_minutes") else None,
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


def load_sources(conn: psycopg.Connection, source_ids: Iterable[int]) -> list[Source]:
    rows = conn.execute(
        """
        SELECT source_id, name, feed_url, host, etag, last_modified, body_sha256, validators_trusted
        FROM sources WHERE source_id = ANY(%s) ORDER BY source_id
        """,
        (list(source_ids),),
    ).fetchall()
    return [Source(*row) for row in rows]


def record_entries(conn: psycopg.Connection, source_id: int, entries: Sequence[FeedEntry]) -> int:
    """Insert entries not seen before (by GUID, else link); return how many were new."""
    if not entries:
        return 0
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_entries (entry_key text, link text, title text,"
            " summary text, content text, author text, published_at timestamptz) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY incoming_entries (entry_key, link, title, summary, content, author, published_at) FROM STDIN"
        ) as copy:
            for e in entries:
                copy.write_row(
                    (_nul(e.entry_key), _nul(e.link), _nul(e.title), _nul(e.summary), _nul(e.content),
                     _nul(e.author), e.published_at)
                )
        cur.execute(
            """
            INSERT INTO entries (source_id, entry_key, link, title, summary, content, author, published_at)
            SELECT %s, entry_key, link, title, summary, content, author, published_at FROM incoming_entries
            ON CONFLICT (source_id, entry_key) DO NOTHING
            """,
            (source_id,),
        )
        return cur.rowcount


def _nul(value: str | None) -> str | None:
    """PostgreSQL text refuses NUL bytes: drop them (they carry no meaning in feeds)."""
    return value.replace("\x00", "") if value else value


def mark_entries(
    conn: psycopg.Connection, outcomes: Sequence[tuple[int, str, str | None]], *, max_attempts: int = 3
) -> None:
    """Record (entry_id, status, error) for entries that produced no staged report.

    A ``retry`` outcome (a timeout, a 5xx) leaves the entry pending until it has failed max_attempts
    times; ``failed`` and ``skipped`` are final.
    """
    if not outcomes:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            UPDATE entries SET attempts = attempts + 1, error = %(error)s, updated_at = now(),
                status = CASE
                    WHEN %(status)s = 'retry' AND attempts + 1 < %(max)s THEN 'pending'
                    WHEN %(status)s = 'retry' THEN 'failed'
                    ELSE %(status)s END
            WHERE entry_id = %(id)s AND status = 'pending'
            """,
            [{"id": i, "status": s, "error": e, "max": max_attempts} for i, s, e in outcomes],
        )


def touch_poll(
    conn: psycopg.Connection,
    source: Source,
    *,
    run_id: str | None,
    status: int | None,
    size: int,
    duration_ms: int,
    not_modified: bool,
    seen: int,
    new: int,
    error: str | None,
    etag: str | None = None,
    last_modified: str | None = None,
    body_sha256: str | None = None,
    polled_at: datetime | None = None,
) -> None:
    """Record one poll in poll_log and update the source's health and validators."""
    ok = error is None
    conn.execute(
        """
        INSERT INTO poll_log (source_id, run_id, http_status, bytes, duration_ms, not_modified,
                              entries_seen, new_entries, error)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (source.source_id, run_id, status, size, duration_ms, not_modified, seen, new, error),
    )
    conn.execute(
        """
        UPDATE sources SET
            last_polled_at = now(), last_status = %(status)s, last_error = %(error)s,
            consecutive_failures = CASE WHEN %(ok)s THEN 0 ELSE consecutive_failures + 1 END,
            next_poll_at = now() + CASE WHEN %(ok)s THEN poll_interval
                           ELSE least(poll_interval * power(2, consecutive_failures + 1), interval '1 day') END,
            etag = CASE WHEN %(ok)s AND NOT %(nm)s THEN %(etag)s ELSE etag END,
            last_modified = CASE WHEN %(ok)s AND NOT %(nm)s THEN %(lm)s ELSE last_modified END,
            body_sha256 = coalesce(%(sha)s, body_sha256),
            entries_seen = entries_seen + %(new)s,
            last_new_entry_at = CASE WHEN %(new)s > 0 THEN now() ELSE last_new_entry_at END
        WHERE source_id = %(id)s
        """,
        {
            "status": status, "error": error, "ok": ok, "nm": not_modified, "etag": etag, "lm": last_modified,
            "sha": body_sha256, "new": new, "id": source.source_id,
        },
    )
