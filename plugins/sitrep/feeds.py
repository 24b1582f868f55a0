"""Feed bytes -> entries, with feedparser, never letting it fetch or open anything itself.

feedparser is only ever handed bytes our guarded client fetched (given a string that looks like a URL
or a path it would open it, unguarded). A feed that parses with errors ("bozo") still yields its
recoverable entries; one that yields nothing at all raises :class:`FeedError` with the reason.

Feeds in the wild are untidy, so every oddity is handled and counted in ``ParsedFeed.problems``
(it ends up in poll_log): relative links (resolved against the feed), missing links (the GUID is used
when it is a URL), links that are not http(s), entries with neither link nor GUID (skipped), GUIDs
repeated inside one feed (the first wins) and absurd dates (before 1990 or in the future: dropped).
An entry is known by its GUID, else by its canonical link, so it is never recorded or fetched twice.

XML external entities are never resolved and entity-expansion bombs are stopped by expat (feedparser
then falls back to its loose parser, which leaves entities unexpanded); tests/test_feeds.py proves both.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
import multiprocessing
import multiprocessing.pool
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import feedparser

from sitrep.errors import FeedError
from sitrep.normalize import canonical_url, http_url
from sitrep.records import FeedEntry

__all__ = ["ParsedFeed", "newest", "parse_feed"]

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
    skipped: int  # entries dropped: neither a usable link nor an id, or a repeated id
    #: Oddities handled: relative_link, missing_link, bad_link, no_key, duplicate_guid, absurd_date.
    problems: dict[str, int] = field(default_factory=dict)


#: Feed bodies up to this size are parsed in the calling process: the most pathological one found (an
#: element of 12,000 attributes, 121 KB) takes about 2 s there. Larger ones go to BoundedParser's child.
IN_PROCESS_BYTES = 128 * 1024


class BoundedParser:
    """parse_feed in a child process (from this process's forkserver), killed past ``timeout`` seconds.

    feedparser's time grows with the square of some inputs (one element with 40,000 attributes, 0.4 MB:
    22 s; a 20 MB feed of them: hours), and one hostile feed must not hold its batch, nor every run
    after it. A feed over the time is that feed's FeedError; the next one gets a new child. Bodies of
    IN_PROCESS_BYTES or less are parsed here: most feeds, and no process to start for them.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> BoundedParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def parse(self, body: bytes, *, feed_url: str, content_type: str | None = None) -> ParsedFeed:
        if len(body) <= IN_PROCESS_BYTES:  # the worst such body costs seconds: not worth a process
            return parse_feed(body, feed_url=feed_url, content_type=content_type)
        if self._pool is None:
            self._pool = multiprocessing.get_context("forkserver").Pool(1)
        pending = self._pool.apply_async(parse_feed, (body,), {"feed_url": feed_url, "content_type": content_type})
        try:
            return pending.get(self.timeout)
        except multiprocessing.TimeoutError:
            self.close()  # the child is killed with its pool: a parse can't be stopped any other way
            raise FeedError(f"feed {feed_url!r} took longer than {self.timeout:g} s to parse, and was stopped"
                            " (SITREP_FEED_PARSE_TIMEOUT): a pathological or hostile feed") from None


def parse_feed(body: bytes, *, feed_url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse feed bytes into entries whose links are absolute http(s) URLs."""
    if not isinstance(body, bytes):  # never let feedparser treat a str as a URL or a file name
        raise TypeError("parse_feed takes the bytes of a feed")
    if not body.strip():
        raise FeedError(f"feed {feed_url!r} is empty")
    headers = {"content-type": content_type} if content_type else {}
    try:
        # A stream, never the bytes themselves: given bytes, feedparser first tries open(body) as a file
        # name, so a feed whose body is "/etc/passwd" or the path of any feed on this disk is read.
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, resolve_relative_uris=False,
                                  sanitize_html=False)
    except (UnicodeError, ValueError) as exc:  # e.g. "&#xD800;": feedparser's loose parser encodes a surrogate
        raise FeedError(f"feed {feed_url!r} can't be parsed: {type(exc).__name__}: {exc}") from exc
    bozo = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    if not parsed.entries:
        if not parsed.get("version"):  # an HTML page, JSON, ...: well-formed or not, it is no feed
            raise FeedError(f"feed {feed_url!r} is not RSS or Atom: {bozo or 'no rss, feed or RDF root element'}")
        return ParsedFeed(title=parsed.feed.get("title"), entries=[], bozo=bozo, skipped=0)
    base = parsed.feed.get("link") or feed_url
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    problems: Counter[str] = Counter()
    for item in parsed.entries:
        try:
            entry = _entry(item, base=base, feed_url=feed_url, problems=problems)
        except ValueError:  # a link urllib refuses ("http://[::1"): this entry only, never the feed
            problems["bad_link"] += 1
            continue
        if entry is None:
            problems["no_key"] += 1
            continue
        if entry.entry_key in seen:  # duplicate GUIDs inside one feed: the first wins
            problems["duplicate_guid"] += 1
            continue
        seen.add(entry.entry_key)
        entries.append(entry)
    if problems:
        log.info("feed url=%s entries with problems (handled): %s", feed_url, dict(problems))
    return ParsedFeed(title=parsed.feed.get("title"), entries=entries, bozo=bozo,
                      skipped=problems["no_key"] + problems["duplicate_guid"], problems=dict(problems))


def newest(entries: list[FeedEntry], limit: int) -> list[FeedEntry]:
    """The ``limit`` newest entries (by date; undated ones after dated, in the feed's order), kept in
    the feed's order: a feed's size bounds its bytes, this bounds the pages one poll can queue."""
    if len(entries) <= limit:
        return entries
    order = sorted(range(len(entries)), key=lambda i: (entries[i].published_at is None,
                                                       -(entries[i].published_at or _EARLIEST).timestamp()))
    return [entries[i] for i in sorted(order[:limit])]


def _absolute(link: object, base: str, feed_url: str, problems: Counter[str]) -> str | None:
    if not link or not isinstance(link, str) or not link.strip():
        return None
    link = link.strip()
    if not urlsplit(link).scheme:
        problems["relative_link"] += 1
    absolute = urljoin(urljoin(feed_url, base), link)
    if not http_url(absolute):  # another scheme, no host, a port out of range, credentials
        problems["bad_link"] += 1
        return None
    return absolute


#: An entry key's longest stored form, in UTF-8 bytes: the unique index on (source_id, entry_key) takes
#: at most 2,704 bytes a row, and 2,000 characters of CJK are 6,000.
_MAX_KEY_BYTES = 2000


def _stored_key(key: str) -> str:
    """The key as stored: its first 2,000 characters (as always), or when those are longer than
    _MAX_KEY_BYTES, a prefix and the SHA-256 of the whole key: still one key per entry, and short."""
    cut = key[:2000]
    encoded = cut.encode("utf-8")
    if len(encoded) <= _MAX_KEY_BYTES:
        return cut
    prefix = encoded[:1900].decode("utf-8", errors="ignore")
    return f"{prefix}#sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def _date(item: feedparser.FeedParserDict, problems: Counter[str]) -> datetime | None:
    absurd = False
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = item.get(key)
        if value:
            try:
                when = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, OSError):
                absurd = True
                continue
            if _EARLIEST <= when <= datetime.now(UTC) + timedelta(days=1):
                return when
            absurd = True
    if absurd:
        problems["absurd_date"] += 1
    return None


def _entry(item: feedparser.FeedParserDict, *, base: str, feed_url: str, problems: Counter[str]) -> FeedEntry | None:
    raw_link = item.get("link")
    if item.get("guidislink") and urlsplit(str(raw_link)).scheme not in {"http", "https"}:
        raw_link = None  # feedparser took a permalink GUID such as "c" for a link: it is only an id
    link = _absolute(raw_link, base, feed_url, problems)
    if link is None:
        for candidate in item.get("links", []):
            if candidate.get("rel", "alternate") == "alternate" and candidate.get("href") != item.get("link"):
                link = _absolute(candidate.get("href"), base, feed_url, problems)
                if link:
                    break
    guid = item.get("id") or item.get("guid")
    guid = guid.strip() if isinstance(guid, str) else None
    if link is None and guid and http_url(guid):
        link = guid
    if link is None:
        problems["missing_link"] += 1
    key = guid or (canonical_url(link) if link else None)
    if not key:
        return None
    content = None
    if item.get("content"):
        content = "\n".join(part.get("value", "") for part in item["content"] if part.get("value")) or None
    return FeedEntry(
        entry_key=_stored_key(key),
        link=link,
        title=(item.get("title") or None),
        summary=(item.get("summary") or None),
        content=content,
        author=(item.get("author") or None),
        published_at=_date(item, problems),
    )
