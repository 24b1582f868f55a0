"""Feed bytes -> entries, with feedparser, never letting it fetch or open anything itself.

feedparser is only ever handed bytes our guarded client fetched (given a string that looks like a URL
or a path it would open it, unguarded). A feed that parses with errors ("bozo") still yields its
recoverable entries; one that yields nothing at all raises :class:`FeedError` with the reason.

Feeds in the wild are untidy, so every oddity is handled and counted in ``ParsedFeed.problems``
(it ends up in poll_log): relative links (resolved against the feed), missing links (the GUID is used
when it is a URL), links that are not http(s), entries with neither link nor GUID (skipped), GUIDs
repeated inside one feed (the first wins), absurd dates (before 1990 or in the future: dropped) and
time zones by names feedparser does not know (CEST, MSK, JST...: converted; an unknown name: no date).
An entry is known by its GUID, else by its canonical link, so it is never recorded or fetched twice;
a GUID that several articles share, or the site's own address, is no id, and their links are.

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
import re
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import feedparser
import feedparser.datetimes.rfc822

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
    shared = _shared_guids(parsed.entries, parsed.feed.get("link"))
    for item in parsed.entries:
        try:
            entry = _entry(item, base=base, feed_url=feed_url, problems=problems, shared_guids=shared)
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


#: Zone names in feeds that feedparser does not know (it reads them, and any name, as UTC), in hours
#: east of UTC. Names that stand for several zones (IST: India, Israel, Ireland; BST: British or
#: Bangladesh Summer; CST: China or US Central) are left out, or to the reading feeds use most.
_ZONE_HOURS: dict[str, float] = {
    "utc": 0, "wet": 0, "west": 1, "cet": 1, "cest": 2, "bst": 1, "eet": 2, "eest": 3, "msk": 3, "msd": 4,
    "trt": 3, "idt": 3, "eat": 3, "cat": 2, "wat": 1, "sast": 2, "samt": 4, "gst": 4, "irst": 3.5,
    "irdt": 4.5, "aft": 4.5, "pkt": 5, "npt": 5.75, "yekt": 5, "ict": 7, "wib": 7, "hkt": 8, "sgt": 8,
    "pht": 8, "awst": 8, "jst": 9, "kst": 9, "acst": 9.5, "aest": 10, "aedt": 11, "nzst": 12, "nzdt": 13,
    "hst": -10, "akst": -9, "akdt": -8, "nst": -3.5, "ndt": -2.5, "art": -3, "brt": -3, "clt": -4,
}
_FEEDPARSER_ZONES = frozenset(feedparser.datetimes.rfc822.timezone_names)
_OFFSET = re.compile(r"[+-]\d\d:?\d\d\s*$")
_ZONE_NAME = re.compile(r"[\d\s]([A-Z]{1,5})\s*$")  # zone names are capitals: "8:00 CEST"


def _zone_hours(raw: object) -> float | None:
    """Hours to take off feedparser's reading of a date string: 0 when it read the zone itself (an
    offset, Z, GMT, the US names), the zone's offset for a name it took for UTC, None for a name
    nobody knows (the time is then unknown: a page's own date is better than one off by hours)."""
    if not isinstance(raw, str):
        return 0.0
    match = _ZONE_NAME.search(raw)
    if match is None or _OFFSET.search(raw[:match.start() + 1]):  # "+0300 MSK": the offset was read already
        return 0.0
    name = match.group(1).lower()
    if name in _FEEDPARSER_ZONES or name in {"am", "pm"}:
        return 0.0
    return _ZONE_HOURS.get(name)


def _date(item: feedparser.FeedParserDict, problems: Counter[str],
          keys: tuple[str, ...] = ("published", "updated", "created")) -> datetime | None:
    """The first of ``keys`` that is a plausible date. Read past feedparser's mapping, which answers
    "updated" with "published" when an item has no date of its own for it."""
    absurd = False
    for key in keys:
        value = dict.get(item, f"{key}_parsed")
        if value:
            hours = _zone_hours(dict.get(item, key))
            if hours is None:
                problems["unknown_time_zone"] += 1
                continue
            try:
                when = datetime.fromtimestamp(calendar.timegm(value), tz=UTC) - timedelta(hours=hours)
            except (OverflowError, ValueError, OSError):
                absurd = True
                continue
            if _EARLIEST <= when <= datetime.now(UTC) + timedelta(days=1):
                return when
            absurd = True
    if absurd:
        problems["absurd_date"] += 1
    return None


def _guid(item: feedparser.FeedParserDict) -> str | None:
    guid = item.get("id") or item.get("guid")
    return (guid.strip() or None) if isinstance(guid, str) else None


def _shared_guids(items: list[feedparser.FeedParserDict], channel_link: str | None) -> set[str]:
    """GUIDs that are not an article's id: one GUID on items with different links (a CMS that writes the
    site's address into every item), or the site's own address. Keyed by GUID, each new article would
    be taken for the first one, recorded once and never fetched."""
    links: dict[str, set[str]] = {}
    for item in items:
        guid = _guid(item)
        if guid:
            links.setdefault(guid, set()).add(str(item.get("link") or ""))
    shared = {guid for guid, seen in links.items() if len(seen) > 1}
    for guid in links:
        parts = urlsplit(guid)
        if parts.scheme in {"http", "https"} and parts.path in {"", "/"} and not parts.query:
            shared.add(guid)  # a site's home page is never one article
        elif channel_link and guid.rstrip("/") == channel_link.strip().rstrip("/"):
            shared.add(guid)
    return shared


def _entry(item: feedparser.FeedParserDict, *, base: str, feed_url: str, problems: Counter[str],
           shared_guids: AbstractSet[str] = frozenset()) -> FeedEntry | None:
    raw_link = item.get("link")
    if (item.get("guidislink") and raw_link == item.get("id") and not str(raw_link).startswith("/")
            and urlsplit(str(raw_link)).scheme not in {"http", "https"}):
        # feedparser took a permalink GUID such as "c" for the link: it is only an id. (guidislink stays
        # set when a <link> after the GUID replaced it, so only the GUID's own text is dropped.)
        raw_link = None
    link = _absolute(raw_link, base, feed_url, problems)
    if link is None:
        for candidate in item.get("links", []):
            if candidate.get("rel", "alternate") == "alternate" and candidate.get("href") != item.get("link"):
                link = _absolute(candidate.get("href"), base, feed_url, problems)
                if link:
                    break
    guid = _guid(item)
    if link is None and guid and http_url(guid):
        link = guid
    if link is None:
        problems["missing_link"] += 1
    if guid in shared_guids and link is not None:
        problems["shared_guid"] += 1
        guid = None  # one GUID on different articles is no id: the link is
    key = guid or (canonical_url(link) if link else None)
    if not key:
        return None
    published_at = _date(item, problems)
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
        published_at=published_at,
        updated_at=_date(item, Counter(), ("updated",)) or published_at,  # counted once, by published_at's
    )
