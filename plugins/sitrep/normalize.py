"""Extracted text and metadata -> a clean report: canonical URL, UTC dates, language, hashes.

Pure functions only: everything here is decided from its arguments, so it is cheap to test and safe to
run in worker processes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import courlan

from sitrep.records import Extracted, PageJob, Report

__all__ = [
    "canonical_url",
    "clean_text",
    "clean_title",
    "content_hash",
    "detect_language",
    "resolve_published",
    "to_report",
]

_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_URL_DATE = re.compile(r"/((?:19|20)\d{2})[/-](0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])(?:/|[-_]|\.html?|$)")
_TITLE_SEPARATORS = (" | ", " – ", " — ", " :: ", " « ", " » ", " - ")


#: Query parameters that never select content, beyond the trackers courlan strips (utm_*, fbclid, gclid...).
_TRACKING_PARAMS = frozenset({"amp", "outputtype", "cmpid", "ocid", "ito", "__twitter_impression", "at_medium",
                              "at_campaign", "smid", "smtyp", "sr_share", "share", "fromamp", "_amp"})
#: Host labels that only pick a mobile or AMP rendering of the same site (m.example.com).
_VARIANT_HOST_LABELS = ("m.", "mobile.", "amp.", "www.")
_AMP_PATH = re.compile(r"/amp/?$|\.amp$|\.amp(?=\.html?$)")


def canonical_url(url: str) -> str:
    """One spelling per article, so that the same page under another URL is an alias, not a report.

    https for http, lower-case host without ``www.``/``m.``/``mobile.``/``amp.``, no default port, no
    fragment, no tracking parameters (courlan's list plus ``_TRACKING_PARAMS``), the remaining query
    parameters sorted, no trailing slash, and the AMP rendering's path (``/amp``, ``.amp.html``) mapped
    to the article's. Parameters that may select content (``?id=``, ``?story=``) are kept: folding two
    articles into one URL would make the second a "revision" of the first.
    """
    raw = url.strip()
    try:
        normalized = courlan.normalize_url(raw, strict=False)
    except Exception:  # courlan rejects some exotic URLs; keep them as given rather than lose them
        normalized = raw
    parts = urlsplit(normalized)
    host = (parts.hostname or "").lower().rstrip(".")
    while not _is_ip(host) and host.count(".") >= 2 and host.startswith(_VARIANT_HOST_LABELS):
        host = host.split(".", 1)[1]
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port in (None, 80, 443) else f"{host}:{parts.port}"
    path = _AMP_PATH.sub("", parts.path) or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    scheme = "https" if parts.scheme in {"http", "https"} else parts.scheme
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in _TRACKING_PARAMS]
    query = f"?{urlencode(sorted(params))}" if params else ""
    return f"{scheme}://{netloc}{path}{query}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def clean_text(text: str) -> str:
    """NFC, no control characters or NUL, single spaces inside lines, one blank line at most."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def clean_title(title: str | None, sitename: str | None = None) -> str | None:
    """The headline without the site's suffix or prefix ("Headline | Kyiv Independent")."""
    if not title:
        return None
    title = clean_text(title).replace("\n", " ")
    site = (sitename or "").strip().lower()
    for sep in _TITLE_SEPARATORS:
        if sep in title:
            head, _, tail = title.rpartition(sep)
            if site and tail.strip().lower() == site or (len(tail.split()) <= 4 and len(head.split()) >= 3):
                return head.strip()
            first, _, rest = title.partition(sep)
            if site and first.strip().lower() == site:
                return rest.strip()
    return title or None


def content_hash(text: str) -> str:
    """SHA-256 of the text with case, punctuation and spacing folded: one hash per article body."""
    folded = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


_UK_LETTERS = set("іїєґІЇЄҐ")
_RU_LETTERS = set("ыэъёЫЭЪЁ")


def detect_language(text: str, hint: str | None = None) -> str | None:
    """ISO 639-1 code from the text's script, with the page's declaration as a hint."""
    sample = text[:4000]
    letters = [c for c in sample if c.isalpha()]
    if not letters:
        return (hint or "")[:2].lower() or None
    cyrillic = sum("\u0400" <= c <= "\u04ff" for c in letters) / len(letters)
    if cyrillic > 0.5:
        uk = sum(c in _UK_LETTERS for c in sample)
        ru = sum(c in _RU_LETTERS for c in sample)
        return "uk" if uk > ru else "ru"
    if hint and len(hint) >= 2 and hint[:2].isalpha():
        return hint[:2].lower()
    latin = sum(c.isascii() for c in letters) / len(letters)
    return "en" if latin > 0.9 else None


def _parse_date(value: str | date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def date_from_url(url: str) -> datetime | None:
    match = _URL_DATE.search(urlsplit(url).path)
    if not match:
        return None
    try:
        return datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
    except ValueError:
        return None


def resolve_published(
    *,
    article: str | date | datetime | None,
    feed: datetime | None,
    url: str,
    fetched: datetime | None,
    now: datetime | None = None,
) -> tuple[datetime | None, str | None]:
    """The first plausible date of: article metadata, feed, URL, fetch time (in UTC, with its source)."""
    now = now or datetime.now(UTC)
    for source, candidate in (
        ("article", _parse_date(article)),
        ("feed", feed),
        ("url", date_from_url(url)),
        ("fetched", fetched),
    ):
        if candidate is not None and _EARLIEST <= candidate <= now + timedelta(days=1):
            return candidate.astimezone(UTC), source
    return None, None


def summarize(text: str, feed_summary: str | None, *, max_chars: int = 400) -> str | None:
    """The feed's summary when it says something, else the first sentences of the text."""
    if feed_summary:
        from sitrep.extract import html_to_text

        candidate = clean_text(html_to_text(feed_summary))
        if len(candidate.split()) >= 8:
            return candidate[:1000]
    sentences = re.split(r"(?<=[.!?])\s+", text.replace("\n", " "))
    out = ""
    for sentence in sentences:
        if out and len(out) + len(sentence) > max_chars:
            break
        out = f"{out} {sentence}".strip()
    return out or None


def to_report(job: PageJob, extracted: Extracted) -> Report:
    """Build the report for one page from what extraction found and what the feed said."""
    text = clean_text(extracted.text)
    canonical = canonical_url(job.final_url or job.url)
    if extracted.canonical_url and _trustworthy_canonical(extracted.canonical_url, job.final_url or job.url):
        canonical = canonical_url(extracted.canonical_url)
    published_at, published_source = resolve_published(
        article=extracted.date, feed=job.feed_published_at, url=job.final_url or job.url, fetched=job.fetched_at
    )
    title = clean_title(extracted.title, extracted.sitename) or clean_title(job.feed_title)
    authors = extracted.authors or ([job.feed_author] if job.feed_author else [])
    return Report(
        entry_id=job.entry_id,
        source_id=job.source_id,
        page_id=job.page_id,
        url=job.url,
        canonical_url=canonical,
        title=title,
        authors=[clean_text(a) for a in authors if a and a.strip()],
        published_at=published_at,
        published_at_source=published_source,
        fetched_at=job.fetched_at,
        language=detect_language(text, extracted.language),
        text=text,
        summary=summarize(text, job.feed_summary),
        word_count=len(text.split()),
        content_sha256=content_hash(text),
        extraction_method=extracted.method,
        sitename=extracted.sitename,
        description=extracted.description,
        tags=extracted.tags,
    )


def _trustworthy_canonical(candidate: str, page_url: str) -> bool:
    """rel=canonical / og:url is trusted when it names an article of the same site.

    Refused: anything but an absolute http(s) URL; the site's home page (templates that point every
    page at "/"); another registered domain (a syndicated copy naming the original: the copy is its own
    report, grouped with the original by the near-duplicate layer, never an alias or a "revision" of
    it). For IP hosts the port must match too (each demo site is its own 127.0.0.1 port).
    """
    parts = urlsplit(candidate)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path in {"", "/"}:
        return False
    return _site_of(candidate) == _site_of(page_url)


def _site_of(url: str) -> str | None:
    """The registered domain of a URL (courlan), or host:port for an IP address."""
    host = canonical_url(url).split("/", 3)[2]
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if _is_ip(bare.strip("[]")):
        return host
    return courlan.extract_domain(url) or bare
