"""Extracted text and metadata -> a clean report: canonical URL, UTC dates, language, hashes.

Pure functions only: everything here is decided from its arguments, so it is cheap to test and safe to
run in worker processes.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import courlan
import py3langid.langid

from sitrep.extract import html_to_text, split_authors, word_count
from sitrep.records import Extracted, PageJob, Report

__all__ = [
    "canonical_url",
    "clean_text",
    "clean_title",
    "content_hash",
    "date_from_url",
    "detect_language",
    "resolve_published",
    "summarize",
    "to_report",
]

#: C0/C1 controls (NUL included), zero-width space, BOM and soft hyphen; line and paragraph separators
#: become newlines first. Zero-width (non-)joiners stay: Persian and Indic scripts need them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")


#: Query parameters that never select content (whole names, any case).
_TRACKING_PARAMS = frozenset({
    "amp", "outputtype", "cmpid", "ocid", "ito", "__twitter_impression", "smid",
    "smtyp", "sr_share", "share", "fromamp", "_amp", "fbclid", "gclid", "gclsrc", "dclid", "twclid", "yclid",
    "ysclid", "msclkid", "igshid", "gbraid", "wbraid", "_ga", "_gl", "xtor", "ref", "ref_src",
    "ref_url", "referer", "referrer", "source", "campaign", "medium", "spm", "cmp", "wt.mc_id", "s_cid", "ns_mchannel",
    "ns_source", "ns_campaign", "ns_linkname", "ns_fee", "ftag", "guccounter", "guce_referrer", "guce_referrer_sig",
    "sessionid", "session_id", "jsessionid", "phpsessid", "clickid", "partnerid", "aff", "affiliate", "affid",
    "keyword", "kwd",
})
#: Their prefixes (utm_source, pk_campaign, hsa_ad...). courlan's own list matched names *containing*
#: cid, eid, uid, ga, source...: ?cid=101 and ?cid=102 were one article, and the second was never fetched.
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "matomo_", "hsa_", "_hs", "oly_", "vero_", "mkt_", "itm_", "at_", "ad_",
                      "ads_", "ga_", "gs_", "mc_", "ml_")
#: Host labels that only pick a mobile or AMP rendering of the same site (m.example.com).
_VARIANT_HOST_LABELS = ("m.", "mobile.", "amp.", "www.")
_AMP_PATH = re.compile(r"/amp/?$|\.amp$|\.amp(?=\.html?$)")


def canonical_url(url: str) -> str:
    """One spelling per article, so that the same page under another URL is an alias, not a report.

    https for http, lower-case host without ``www.``/``m.``/``mobile.``/``amp.``, no default port, no
    fragment, no tracking parameters (``_TRACKING_PARAMS``, ``_TRACKING_PREFIXES``), the remaining query
    parameters sorted, no trailing slash, and the AMP rendering's path (``/amp``, ``.amp.html``) mapped
    to the article's. Parameters that may select content (``?id=``, ``?story=``) are kept: folding two
    articles into one URL would make the second a "revision" of the first.
    """
    raw = url.strip()
    given = urlsplit(raw)  # a ValueError ("http://[::1") is the caller's: such a link is refused where it is read
    try:
        # courlan for the scheme, host and path only: its query filter is a substring match (see above)
        normalized = courlan.normalize_url(urlunsplit(given._replace(query="", fragment="")), strict=False)
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
    params = [(k, v) for k, v in parse_qsl(given.query, keep_blank_values=True) if not _tracking(k)]
    query = f"?{urlencode(sorted(params))}" if params else ""
    return f"{scheme}://{netloc}{path}{query}"


def _tracking(name: str) -> bool:
    low = name.lower()
    return low in _TRACKING_PARAMS or low.startswith(_TRACKING_PREFIXES)


#: The longest URL we keep, in UTF-8 bytes. URLs are keys of unique B-tree indexes (reports.canonical_url,
#: report_urls.url), which take at most 2,704 bytes a row: one longer URL failed its whole batch's load,
#: on every retry. No article's URL comes near (sitemaps stop at 2,048 characters).
MAX_URL_BYTES = 2000


def url_fits(url: str) -> bool:
    """Short enough to be stored and indexed (MAX_URL_BYTES)."""
    return len(url.encode("utf-8", "surrogatepass")) <= MAX_URL_BYTES


def http_url(url: str) -> bool:
    """An absolute http(s) URL with a host and a port urllib can read, without a user:password part, no
    longer than we can store: one we can fetch, normalize and index.

    (``http://host:99999/`` and ``http://host:abc/`` split fine, then raise on ``.port``.) The fetcher
    refuses credentials in a URL (they would be written to logs and tables), so such a link is refused
    where it is read; fetched, it failed, and the same article linked without them failed with it.
    """
    if not url_fits(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and "@" not in parts.netloc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def clean_text(text: str) -> str:
    """NFC, no control characters or NUL, single spaces inside lines, one blank line at most."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    text = _CONTROL.sub("", text)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def clean_title(title: str | None, sitename: str | None = None, url: str | None = None) -> str | None:
    """The headline without the site's name around it ("Headline | Kyiv Independent" -> "Headline").

    A part after (or before) a separator is dropped when it names the site (its sitename, or its host
    without punctuation), or, after ``|``, ``::``, ``«`` or ``»``, when it is short; after a dash only
    when it looks like a name (short, every word capitalised), because "Kharkiv - what we know" is a
    real headline. Repeated ("Headline | Ukraine | Site") until nothing more comes off.
    """
    if not title:
        return None
    title = clean_text(title).replace("\n", " ")
    names = {_squash(sitename)} if sitename and _squash(sitename) else set()
    host = (urlsplit(url).hostname or "") if url else ""
    if host:
        names |= {_squash(host.removeprefix("www.")), _squash(host.removeprefix("www.").rsplit(".", 1)[0])}
    changed = True
    while changed:
        changed = False
        for sep in _TITLE_SEPARATORS:
            first, found, rest = title.partition(sep)
            if found and len(rest.split()) >= 2 and names and _squash(first) in names:
                title, changed = rest.strip(), True
                break
            head, found, tail = title.rpartition(sep)
            if found and len(head.split()) >= max(2, len(tail.split())) \
                    and _is_site_part(tail, names, strong=sep.strip() not in "-–—"):
                title, changed = head.strip(), True
                break
    return title or None


_TITLE_SEPARATORS = (" | ", " || ", " – ", " — ", " :: ", " « ", " » ", " - ", " · ", " • ")


def _squash(value: str | None) -> str:
    return re.sub(r"\W+", "", (value or "").casefold())


def _is_site_part(part: str, names: set[str], *, strong: bool) -> bool:
    squashed = _squash(part)
    if not squashed:
        return True
    if squashed in names or any(n and (n in squashed or squashed in n) for n in names if len(n) >= 4):
        return True
    words = part.split()
    if strong:
        return len(words) <= 4
    if any(c.isdigit() for c in part) or any(w.casefold().strip(".,!") in _HEADLINE_WORDS for w in words):
        return False  # "... Apartment Block – 7 Killed", "... Gaza School - Dozens Dead": the headline's own
    return len(words) <= 3 and all(w[:1].isupper() or not w[:1].isalpha() for w in words)


#: Words of a headline's last clause, never of a site's name.
_HEADLINE_WORDS = frozenset({"killed", "dead", "dies", "die", "died", "wounded", "injured", "hurt", "missing",
                             "captured", "destroyed", "hit", "hits", "struck", "strikes", "evacuated", "displaced",
                             "fled", "arrested", "detained", "freed", "released", "says", "said", "warns"})


def content_hash(text: str) -> str:
    """SHA-256 of the text with case, punctuation and spacing folded: one hash per article body."""
    folded = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


@functools.cache
def _identifier() -> py3langid.langid.LanguageIdentifier:
    """py3langid's model (shipped in its wheel), loaded once per process (about a second)."""
    langid = py3langid.langid
    return langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)


@functools.cache
def _languages() -> frozenset[str]:
    """ISO 639-1 codes a declaration may name: the model's own, and a few it folds into others."""
    return frozenset(lang for lang in _identifier().nb_classes if len(lang) == 2) | {"nb", "ti", "ff", "tn", "wo"}


def detect_language(text: str, hint: str | None = None) -> str | None:
    """ISO 639-1 code of the text (py3langid), with the page's declared language as a hint.

    The text decides when it is clear; the declaration wins when the model finds it plausible (it
    separates close pairs such as Ukrainian/Russian on short texts, or Bosnian/Croatian/Serbian) and
    when the text is too short to tell. A declaration contradicted by a confident model (a template's
    ``lang="en"`` around a Ukrainian article) loses.
    """
    declared = hint.strip().replace("_", "-").split("-")[0].lower() if hint else ""
    declared = declared if declared in _languages() else ""
    sample = text[:300]  # about 50 words: plenty for the model, whose cost grows with the length
    if len(sample.split()) < 5:
        return declared or None
    ranked = [(lang, p) for lang, p in _identifier().rank(sample) if len(lang) == 2]
    best, confidence = ranked[0]
    if declared and (declared == best or dict(ranked).get(declared, 0.0) >= 0.05 or confidence < 0.5):
        return declared
    return best if confidence >= 0.2 else None


_EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
#: Clock skew we accept on a timestamp "from the future"; a bare day may be a day ahead (time zones).
_SKEW = timedelta(minutes=15)
#: A bare day is a calendar day where the page was written: from 14 h before that day in UTC (UTC+14)
#: to 12 h after it (UTC-12).
_EAST, _WEST = timedelta(hours=14), timedelta(hours=12)


def _parse_date(value: str | date | datetime | None) -> tuple[datetime | None, bool]:
    """(datetime in UTC, whether it carried a time of day); naive values are taken as UTC."""
    if value is None:
        return None, False
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC), False
    if isinstance(value, datetime):
        parsed, has_time = value, True
    else:
        raw = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return None, False
        has_time = len(raw) > 10
    try:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC), has_time
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: CMS placeholders for "no date"
        return None, False


_URL_DATES = (
    re.compile(r"/((?:19|20)\d{2})[/-](0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])(?:/|[-_]|\.html?|$)"),
    re.compile(r"[/_-]((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:[/_.-]|$)"),
)


def date_from_url(url: str) -> datetime | None:
    """The day in an article URL (/2024/06/03/..., /2024-06-03-..., /20240603/...), or None."""
    path = urlsplit(url).path
    for pattern in _URL_DATES:
        match = pattern.search(path)
        if match:
            try:
                return datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC)
            except ValueError:
                continue
    return None


def resolve_published(
    *,
    article: str | date | datetime | None,
    feed: datetime | None,
    url: str,
    fetched: datetime | None,
    now: datetime | None = None,
) -> tuple[datetime | None, str | None]:
    """The first plausible date of: article metadata, feed, URL, fetch time (in UTC, with its source).

    Implausible dates (before 1990, or in the future beyond clock skew) fall through to the next
    source. When the article gives only a day and the feed a timestamp on that day (in some time zone),
    the feed's timestamp is the more precise answer and is taken (source "feed"). An article's bare day
    more than a day from the date in its URL gives way (htmldate's oldest date on the page can be a
    teaser's; a CMS puts the day of publication in the URL).
    """
    now = now or datetime.now(UTC)
    feed_at, _ = _parse_date(feed)
    url_day = date_from_url(url)
    candidates = [("article", *_parse_date(article)), ("feed", feed_at, True),
                  ("url", url_day, False), ("fetched", *_parse_date(fetched))]
    for source, candidate, has_time in candidates:
        if candidate is None or candidate < _EARLIEST_DATE:
            continue
        if source == "article" and not has_time and url_day is not None and abs(candidate - url_day) > timedelta(days=1):
            continue  # a bare day found on the page (a teaser's?) against the day its URL was made on: the URL's
        if candidate > now + (_SKEW if has_time else timedelta(days=1)):
            continue
        if not has_time and feed_at is not None and source != "feed" and _EARLIEST_DATE <= feed_at <= now + _SKEW \
                and candidate - _EAST <= feed_at < candidate + timedelta(days=1) + _WEST:
            return feed_at, "feed"
        return candidate, source
    return None, None


_BOILERPLATE_SUMMARY = re.compile(
    r"(the post .{0,300} appeared first on .*$|continue reading.*$|read more.*$|\[(?:…|\.\.\.)\]\s*$)",
    re.IGNORECASE | re.DOTALL,
)


def summarize(text: str, feed_summary: str | None, *, title: str | None = None, max_chars: int = 400) -> str | None:
    """The feed's summary when it says something, else the first sentences of the text.

    "Says something": at least eight words once "The post ... appeared first on ...", "Continue
    reading" and similar are cut, and not just the title again.
    """
    if feed_summary:
        candidate = _BOILERPLATE_SUMMARY.sub("", clean_text(html_to_text(feed_summary))).strip()
        if len(candidate.split()) >= 8 and _squash(candidate) != _squash(title):
            return _first_sentences(candidate, 1000)
    return _first_sentences(text[: 2 * max_chars], max_chars)


def _first_sentences(text: str, max_chars: int) -> str | None:
    out = ""
    for sentence in re.split(r"(?<=[.!?…])\s+(?=[\"'“«(\[]?[A-ZА-ЯЁІЇЄҐ0-9])", " ".join(text.split())):
        if out and len(out) + 1 + len(sentence) > max_chars:
            break
        out = f"{out} {sentence}".strip()
    if len(out) > max_chars:  # one very long sentence: cut at a word boundary
        out = out[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return out or None


def to_report(job: PageJob, extracted: Extracted) -> Report:
    """Build the report for one page from what extraction found and what the feed said."""
    page_url = job.final_url or job.url
    text = clean_text(extracted.text)
    canonical = canonical_url(page_url)
    if not url_fits(canonical):  # redirected to a URL too long to index: the link's own (which fits)
        canonical = canonical_url(job.url)
    if extracted.canonical_url and _trustworthy_canonical(extracted.canonical_url, page_url):
        declared = canonical_url(extracted.canonical_url)
        canonical = declared if url_fits(declared) else canonical
    dated_url = page_url if date_from_url(page_url) or not extracted.canonical_url else extracted.canonical_url
    article_date = extracted.date
    if article_date and len(article_date) <= 10 and (url_day := date_from_url(dated_url)) is not None \
            and url_day.date().isoformat() == article_date[:10]:
        article_date = None  # a bare day that htmldate read off a URL in the markup: the URL's, not the article's
    published_at, published_source = resolve_published(
        article=article_date, feed=job.feed_published_at, url=dated_url, fetched=job.fetched_at
    )
    title = clean_title(extracted.title, extracted.sitename, page_url) or clean_title(job.feed_title, None, page_url)
    authors = extracted.authors or split_authors(job.feed_author)
    description = clean_text(extracted.description).replace("\n", " ") if extracted.description else None
    return Report(
        entry_id=job.entry_id,
        source_id=job.source_id,
        page_id=job.page_id,
        url=job.url,
        canonical_url=canonical,
        title=title,
        authors=[a for a in dict.fromkeys(clean_text(a) for a in authors) if a],
        published_at=published_at,
        published_at_source=published_source,
        fetched_at=job.fetched_at,
        language=detect_language(text, extracted.language),
        text=text,
        summary=summarize(text, job.feed_summary, title=title),
        word_count=word_count(text),
        content_sha256=content_hash(text),
        extraction_method=extracted.method,
        sitename=clean_text(extracted.sitename) if extracted.sitename else None,
        description=description or None,
        tags=[t for t in dict.fromkeys(clean_text(t) for t in extracted.tags) if t],
    )


def _trustworthy_canonical(candidate: str, page_url: str) -> bool:
    """rel=canonical / og:url is trusted when it names an article of the same site.

    Refused: anything but an absolute http(s) URL; the site's home page (templates that point every
    page at "/"); another registered domain (a syndicated copy naming the original: the copy is its own
    report, grouped with the original by the near-duplicate layer, never an alias or a "revision" of
    it). For IP hosts the port must match too (each demo site is its own 127.0.0.1 port).
    """
    if not http_url(candidate) or urlsplit(candidate).path in {"", "/"}:
        return False
    return _site_of(candidate) == _site_of(page_url)


def _site_of(url: str) -> str | None:
    """The registered domain of a URL (courlan), or host:port for an IP address."""
    host = canonical_url(url).split("/", 3)[2]
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if _is_ip(bare.strip("[]")):
        return host
    return courlan.extract_domain(url) or bare
