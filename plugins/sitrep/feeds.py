"""Feed bytes -> entries, with feedparser, never letting it fetch or open anything itself.

feedparser is only ever handed bytes our guarded client fetched (given a string that looks like a URL
or a path it would open it, unguarded). A feed that parses with errors ("bozo") still yields its
recoverable entries; one that yields nothing at all raises :class:`FeedError` with the reason.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import feedparser

from sitrep.errors import FeedError
from sitrep.records import FeedEntry

__all__ = ["ParsedFeed", "parse_feed"]

log = logging.getLogger(__name__)

# feedparser would resolve relative links and sanitize HTML for us; we resolve links ourselves and
# keep HTML handling to trafilatura, which is both faster and what we measure.
feedparser.RESOLVE_RELATIVE_URIS = 0
feedparser.SANITIZE_HTML = 0

_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[FeedEntry]
    bozo: str | None  # feedparser's complaint, when the feed was malformed but recoverable
    skipped: int  # entries with neither a usable link nor an id


def parse_feed(body: bytes, *, feed_url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse feed bytes into entries whose links are absolute http(s) URLs."""
    if not isinstance(body, bytes):  # never let feedparser treat a str as a URL or a file name
        raise TypeError("parse_feed takes the bytes of a feed")
    if not body.strip():
        raise FeedError(f"feed {feed_url!r} is empty")
    headers = {"content-type": content_type} if content_type else {}
    parsed = feedparser.parse(body, response_headers=headers, resolve_relative_uris=False, sanitize_html=False)
    bozo = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    if not parsed.entries:
        if bozo and not parsed.get("version"):
            raise FeedError(f"feed {feed_url!r} is not RSS or Atom: {bozo}")
        return ParsedFeed(title=parsed.feed.get("title"), entries=[], bozo=bozo, skipped=0)
    base = parsed.feed.get("link") or feed_url
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    skipped = 0
    for item in parsed.entries:
        entry = _entry(item, base=base, feed_url=feed_url)
        if entry is None:
            skipped += 1
            continue
        if entry.entry_key in seen:  # duplicate GUIDs inside one feed: the first wins
            skipped += 1
            continue
        seen.add(entry.entry_key)
        entries.append(entry)
    return ParsedFeed(title=parsed.feed.get("title"), entries=entries, bozo=bozo, skipped=skipped)


def _absolute(link: str | None, base: str, feed_url: str) -> str | None:
    if not link or not isinstance(link, str):
        return None
    link = link.strip()
    absolute = urljoin(urljoin(feed_url, base), link)
    if urlsplit(absolute).scheme not in {"http", "https"}:
        return None
    return absolute


def _date(item: feedparser.FeedParserDict) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = item.get(key)
        if value:
            try:
                when = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, OSError):
                continue
            if _EARLIEST <= when <= datetime.now(UTC) + timedelta(days=1):
                return when
    return None


def _entry(item: feedparser.FeedParserDict, *, base: str, feed_url: str) -> FeedEntry | None:
    link = _absolute(item.get("link"), base, feed_url)
    if link is None:
        for candidate in item.get("links", []):
            if candidate.get("rel", "alternate") == "alternate":
                link = _absolute(candidate.get("href"), base, feed_url)
                if link:
                    break
    guid = item.get("id") or item.get("guid")
    guid = guid.strip() if isinstance(guid, str) else None
    key = guid or link
    if not key:
        return None
    if link is None and guid and urlsplit(guid).scheme in {"http", "https"}:
        link = guid
    content = None
    if item.get("content"):
        content = "\n".join(part.get("value", "") for part in item["content"] if part.get("value")) or None
    return FeedEntry(
        entry_key=key[:2000],
        link=link,
        title=(item.get("title") or None),
        summary=(item.get("summary") or None),
        content=content,
        author=(item.get("author") or None),
        published_at=_date(item),
    )
