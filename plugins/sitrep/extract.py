"""Page bytes -> article text and metadata, with trafilatura and a recorded fallback chain.

The page is parsed once (``parse_page``: trafilatura's ``load_html``, which does its own encoding
detection on the bytes, or the same tree by a shorter way for the common UTF-8 page).
Metadata is read from that tree once (trafilatura's metadata functions, plus the declared publication
timestamp and language, which it does not return); each configuration of the chain works on a copy.
The chain, each step recorded as ``extraction_method``:

    trafilatura           the configured options (settings SITREP_EXTRACT_*; see bench/extraction.py)
    trafilatura-balanced  trafilatura's balanced mode, with its readability/justext comparison
    trafilatura-recall    its recall mode
    feed-content          the feed entry's content:encoded
    feed-summary          the feed entry's summary

A step runs only while the best text so far is too short: below ``min_words``, or below 60% of the
words of the feed's content:encoded when the feed carries the article. The text loses a first line
that repeats the headline, repeated paragraphs (pull quotes) and trailing copyright lines.

A page whose best text has fewer than ``MIN_USABLE_WORDS`` words raises :class:`ExtractionError` with
the reason (recorded on the entry as a failed extraction); it is never loaded as an empty report.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from dataclasses import replace
from urllib.parse import urlsplit

import htmldate
import trafilatura
import trafilatura.metadata as tm
from lxml import etree
from lxml import html as lxml_html
from trafilatura.utils import DOCTYPE_TAG, HTML_PARSER

from sitrep.errors import ExtractionError
from sitrep.records import Extracted
from sitrep.settings import ExtractSettings

__all__ = ["MIN_USABLE_WORDS", "extract_page", "html_to_text", "parse_page", "split_authors", "word_count"]

log = logging.getLogger(__name__)

#: Below this many words a page has nothing usable (a video page, a consent wall, a gallery): failed.
MIN_USABLE_WORDS = 15

_HEAD_DATES = etree.XPath(
    "/html/head/meta[@property='article:published_time' or @property='og:published_time' or @name='article:published_time'"
    " or @itemprop='datePublished' or @name='pubdate' or @name='publishdate' or @name='date' or @name='dc.date'"
    " or @name='DC.date.issued' or @name='sailthru.date' or @name='parsely-pub-date']/@content"
)
#: Outside the page's chrome: a ticker or a sidebar of other stories is a row of <article>s with their <time>s.
_NOT_CHROME = ("not(ancestor::aside or ancestor::nav or ancestor::footer[not(ancestor::article)]"
               " or ancestor::header[not(ancestor::article)])")
_BODY_DATES = etree.XPath(f"//*[@itemprop='datePublished'][{_NOT_CHROME}]/@datetime"
                          f" | (//article//time[@datetime][{_NOT_CHROME}])[1]/@datetime")
_JSONLD = etree.XPath("//script[@type='application/ld+json']/text()")
_LANG_XPATHS = etree.XPath(
    "/html/@lang | /html/@xml:lang | /html/head/meta[@http-equiv='content-language' or @http-equiv='Content-Language']/@content"
    " | /html/head/meta[@property='og:locale']/@content",
    namespaces={"xml": "http://www.w3.org/XML/1998/namespace"},
)
_SECTION = etree.XPath("/html/head/meta[@property='article:section' or contains(@name, 'subject')]/@content")
#: rel="tag" links (the microformat most CMSs emit): one cheap pass, where trafilatura's class-name
#: heuristics cost a third of its metadata time on a heavy page. Read with iter("a"), not an XPath:
#: 0.25 against 0.4 ms on a 110 KB page (265 links).
_TAG_RELS = frozenset({"tag", "category tag", "category"})
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_AUTHOR_SPLIT = re.compile(r"\s*(?:;|,|\band\b|&|\bи\b|\bі\b|\bта\b)\s*")
_BY = re.compile(r"^(?:by|von|par|por|автор[:]?|від)\s+", re.IGNORECASE)


#: Byline parts that are no person: wire agencies and words of a role or a place ("Staff and agencies",
#: "Jonathan Beale, Defence correspondent, in Kharkiv", "Jane Doe | BBC News, Kyiv", "..., Reuters").
_NOT_A_NAME = re.compile(
    r"^(?:staff|agencies|reuters|ap|afp|dpa|upi|tass|ria novosti|interfax|ukrinform|associated press|"
    r"the associated press|agence france-presse|bbc news|al jazeera|our correspondent|news desk|newsroom)$"
    r"|\b(?:correspondent|editor|reporter|writer|columnist|contributor|staff)\b", re.IGNORECASE)
_PLACE_PART = re.compile(r"^(?:in|at|from|reporting from|в|у|из|з)\s", re.IGNORECASE)


def split_authors(raw: str | None) -> list[str]:
    """trafilatura joins authors with "; ": one name per item, without "By", duplicates, e-mail addresses,
    agencies, roles and places ("in Kharkiv"), or what follows a "|" (the outlet)."""
    names = []
    for line in (raw or "").split(";"):
        for part in _AUTHOR_SPLIT.split(line.split("|")[0]):
            name = _BY.sub("", " ".join(part.split())).strip(" .-|")
            if (name and "@" not in name and not name.lower().startswith(("http", "www.")) and len(name) <= 80
                    and not name[:1].islower() and not _NOT_A_NAME.search(name) and not _PLACE_PART.match(name)):
                names.append(name)
    if not names and raw and raw.strip():  # a credit and no person ("Staff and agencies", "Reuters"): the credit
        credit = _BY.sub("", " ".join(raw.split("|")[0].split())).strip(" .-|;")
        return [credit] if credit and "@" not in credit and len(credit) <= 80 else []
    return list(dict.fromkeys(names))


def _declared_language(tree: lxml_html.HtmlElement) -> str | None:
    for value in _LANG_XPATHS(tree):
        code = str(value).strip().replace("_", "-").split("-")[0].lower()
        if len(code) == 2 and code.isalpha():
            return code
    return None


def _jsonld_dates(tree: lxml_html.HtmlElement) -> list[str]:
    found: list[str] = []
    for script in _JSONLD(tree):
        try:
            data = json.loads(script)
        except ValueError:
            found += re.findall(r'"datePublished"\s*:\s*"([^"]+)"', script)
            continue
        stack = [data]
        while stack:  # depth first, in document order: the page's own article before the lists after it
            item = stack.pop()
            if isinstance(item, dict):
                if isinstance(item.get("datePublished"), str):
                    found.append(item["datePublished"])
                stack.extend(reversed([v for v in item.values() if isinstance(v, dict | list)]))
            elif isinstance(item, list):
                stack.extend(reversed(item))
    return found


# What trafilatura.load_html strips before parsing (its INVALID_XML_CHARS), as UTF-8: C0 controls but
# tab, newline and carriage return (one byte each), and U+FFFE and U+FFFF (three bytes, never in ASCII).
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")


def parse_page(body: bytes) -> lxml_html.HtmlElement | None:
    """The page's tree: ``trafilatura.load_html(body)`` without the steps that change nothing on it.

    load_html tries to decompress the page, decodes it, strips XML-invalid characters from all of it
    with a regex and repairs two doctype/<html> quirks, then parses. On a page that starts with
    markup (nothing to decompress), is valid UTF-8 (the Fetcher hands pages on as UTF-8) and has none
    of those characters or quirks, those steps are no-ops, and checking that in C costs less than the
    regex: 1.1 against 1.5 ms for the whole parse of a 110 KB bench page (medians of five rounds over
    400 pages). Any other page goes through load_html. tests/test_extract.py checks that both give
    the same tree.
    """
    if body[:64].lstrip()[:1] != b"<" or len(body.translate(None, _CONTROL_BYTES)) != len(body) \
            or (not body.isascii() and any(bad in body for bad in _NONCHARACTERS)):
        return trafilatura.load_html(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return trafilatura.load_html(body)
    beginning = text[:50].lower()
    head = text[:4096].splitlines()[:4]
    if "html" not in beginning or ("doctype" in beginning and DOCTYPE_TAG.match(head[0])) \
            or any("<html" in line and line.endswith("/>") for line in head):
        return trafilatura.load_html(body)  # a fragment, or one of the quirks load_html repairs
    try:
        tree = lxml_html.fromstring(text, parser=HTML_PARSER)
    except (ValueError, etree.ParserError):  # ValueError: an XML declaration naming an encoding
        return trafilatura.load_html(body)
    return tree if len(tree) >= 1 else trafilatura.load_html(body)


def _precise_date(tree: lxml_html.HtmlElement) -> str | None:
    """The publication timestamp (with time and offset) the page declares, or None.

    htmldate returns the day only; a report needs the time too. Head meta tags first
    (article:published_time and kin), then JSON-LD, then schema.org markup and <time> in an article
    outside the page's chrome; only full timestamps count. Each source is read only when those before
    it have none: the head's tags cost 0.02 ms on a 110 KB page, the JSON-LD's and the markup's
    searches of the whole tree 0.1 and 0.4 ms.
    """
    for source in (_HEAD_DATES, _jsonld_dates, _BODY_DATES):
        for found in source(tree):
            value = str(found).strip()
            if _TIMESTAMP.match(value):
                return value
    return None


def _tag_links(tree: lxml_html.HtmlElement) -> list[lxml_html.HtmlElement]:
    return [a for a in tree.iter("a") if a.get("rel") in _TAG_RELS and a.get("href") is not None]


def _metadata(tree: lxml_html.HtmlElement, url: str) -> Extracted:
    """Title, authors, date, sitename, canonical URL, description, categories and tags of the page.

    trafilatura's own metadata functions, in the order of its ``extract_metadata`` (meta tags, then
    JSON-LD, then the heuristics for whatever is still missing), minus the licence, and with the
    page's declared timestamp before htmldate: about half the cost of ``with_metadata=True``, and run
    once per page rather than once per configuration of the fallback chain.
    """
    meta = tm.examine_meta(tree)
    if meta.author and " " not in meta.author:
        meta.author = None  # trafilatura's rule: a single word is a handle, not a name
    try:
        meta = tm.extract_meta_json(tree, meta)
    except Exception as exc:  # trafilatura's JSON-LD parsing has edge cases of its own
        log.debug("url=%s: JSON-LD metadata unreadable: %r", url, exc)
    meta.title = meta.title or tm.extract_title(tree)
    meta.author = meta.author or tm.extract_author(tree)
    meta.url = meta.url or tm.extract_url(tree, url)
    sitename = (meta.sitename or tm.extract_sitename(tree) or "").lstrip("@") or None
    # not from the URL here: normalization reads it there itself, and records "url" as the source
    day = _precise_date(tree) or htmldate.find_date(tree, extensive_search=False, original_date=True)
    categories = meta.categories or [str(v) for v in _SECTION(tree)]
    tags = meta.tags or []
    if not categories and not tags:  # links to tag and category pages, when the meta tags say nothing
        tags = [t for t in (" ".join(a.text_content().split()) for a in _tag_links(tree)) if t and len(t.split()) <= 5]
    meta.clean_and_trim()
    return Extracted(
        text="",
        method="",
        title=meta.title,
        authors=split_authors(meta.author),
        date=day,
        sitename=sitename,
        language=_declared_language(tree),
        canonical_url=meta.url,
        description=meta.description,
        tags=list(dict.fromkeys(t.strip() for t in [*categories, *tags] if t and t.strip())),
    )


def _text(tree: lxml_html.HtmlElement, url: str, options: ExtractSettings) -> str | None:
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        fast=options.fast,
        favor_precision=options.favor_precision,
        favor_recall=options.favor_recall,
        include_tables=options.include_tables,
        include_comments=options.include_comments,
    )
    if doc is None:
        return None
    text, comments = getattr(doc, "text", None), getattr(doc, "comments", None)
    # trafilatura keeps reader comments apart from the article: with include_comments they follow it.
    return f"{text}\n\n{comments}" if text and comments and options.include_comments else text


def _chain(options: ExtractSettings) -> list[tuple[str, ExtractSettings]]:
    """The configured options, then (while the text is too short) trafilatura's balanced mode with its
    readability/justext comparison, then its recall mode."""
    chain = [("trafilatura", options)]
    balanced = replace(options, fast=False, favor_precision=False, favor_recall=False)
    if balanced != options:
        chain.append(("trafilatura-balanced", balanced))
    recall = replace(balanced, favor_recall=True)
    if recall != options:
        chain.append(("trafilatura-recall", recall))
    return chain


def _enough_words(options: ExtractSettings, feed_content: str | None) -> int:
    """Words below which the next step of the chain runs: ``min_words``, or 60% of the feed's full text.

    A feed that carries the article (content:encoded) says how long it is: a page text much shorter
    than that missed part of it, even when it is long enough by itself.
    """
    feed_words = word_count(html_to_text(feed_content)) if feed_content else 0
    return max(options.min_words, int(0.6 * feed_words))


_TRAILER = re.compile(r"^(?:©|\(c\)\s|copyright\b)|all rights reserved|^our standards:", re.IGNORECASE)
#: A line that points at other articles ("Read also: ...", "Читайте також: ..."): in the text it adds their
#: places, actors and events to this report and breaks near-duplicate grouping with its other copies.
_POINTER = re.compile(r"^\W*(?:read (?:also|more)|also read|see also|related(?: articles?| stories| coverage)?|"
                      r"more (?:from|on this)|читайте (?:також|также)|дивіться також|смотрите также|"
                      r"(?:à )?lire aussi|اقرأ أيضا[ًً]?)\b\s*[:\-–—]"
                      r"|^(?:sign up here|subscribe (?:now|here)|join now|become a member)\W*$", re.IGNORECASE)


def _tidy(text: str | None) -> str | None:
    """Drop what trafilatura sometimes keeps and is never article text, on any site.

    - a paragraph repeated, or contained in another (a pull quote repeats a sentence of the body);
    - copyright and "all rights reserved" lines at the end;
    - short lines that point at other articles ("Read also: ...").
    """
    if not text:
        return text
    lines = [line for line in text.split("\n") if line.strip()
             and not (len(line.split()) <= 40 and _POINTER.match(line.strip()))]
    keys = [_squash(line) for line in lines]
    kept = []
    for i, (line, key) in enumerate(zip(lines, keys, strict=True)):
        if len(line.split()) >= 8 and (key in keys[:i] or any(key in other for j, other in enumerate(keys)
                                                              if j != i and len(other) >= 1.5 * len(key))):
            continue
        kept.append(line)
    while kept and len(kept[-1].split()) <= 30 and _TRAILER.search(kept[-1]):
        kept.pop()
    return "\n".join(kept)


def _without_headline(text: str | None, title: str | None) -> str | None:
    """The text without a first line that is the headline (the title is a field of its own).

    trafilatura keeps the ``<h1>`` when it sits inside the article container (more often with
    favor_recall); a headline repeated as the first line of every text is noise for search and for
    near-duplicate detection alike.
    """
    if not text or not title:
        return text
    first, _, rest = text.partition("\n")
    head, full = _squash(first), _squash(title)
    if head and len(first.split()) <= 40 and (head == full or (full.startswith(head) and len(head) >= 12)):
        return rest.lstrip("\n")
    return text


def _squash(value: str) -> str:
    return re.sub(r"\W+", "", value.casefold())


_BLOCK_TAGS = frozenset({"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                         "pre", "figure", "figcaption", "table", "tr", "section", "article", "header", "footer", "aside"})


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (a feed's content:encoded or summary), one block per line."""
    if "<" not in fragment:
        return fragment.strip()
    try:
        tree = lxml_html.fragment_fromstring(fragment, create_parent="div")
    except (ValueError, etree.ParserError):
        return re.sub(r"<[^>]+>", " ", fragment).strip()
    for bad in tree.xpath(".//script | .//style"):
        bad.drop_tree()
    # Line breaks around every block and at each <br>, then the text once: a block inside another (a
    # paragraph in a quote or a list item) is not repeated, and text outside blocks is kept.
    for el in tree.iter():
        if el.tag == "br":
            el.tail = "\n" + (el.tail or "")
        elif el.tag in _BLOCK_TAGS:
            el.text, el.tail = "\n" + (el.text or ""), "\n" + (el.tail or "")
    lines = (" ".join(line.split()) for line in tree.text_content().split("\n"))
    return "\n".join(line for line in lines if line)


_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "header"})
_LIST_TAGS = frozenset({"div", "section", "aside", "ul", "ol"})


def _drop_teaser_lists(tree: lxml_html.HtmlElement, url: str) -> int:
    """Remove lists of teasers: two or more items in a row, each a headline link to another page with at
    most a line of summary ("More from ...", "Popular now", "Related"), outside the article's own markup.

    trafilatura keeps such a list when it is plain divs and paragraphs below the article: its summaries
    read as paragraphs, and their places and actors became the report's (a Crimea report tagged with El
    Fasher and the RSF, an alert rule on El Fasher fired on it). Never inside ``<article>`` or an
    ``articleBody``, never paragraphs, never links within the page (a live blog's permalinks): "What we
    know" bullets that lead with links, a briefing whose paragraphs open with linked headlines and a live
    blog's posts are the article. (When too little text is left, extract_page reads the page whole.)
    Returns how many words it dropped.
    """
    here = _this_page(url)
    boxes: dict[lxml_html.HtmlElement, None] = {}  # the boxes around headline links, up to three levels up
    for link in tree.iter("a"):  # in Python: an XPath counting each link's words cost 0.7 ms on a news page
        text = link.text_content() if len(link) else link.text
        if not text or len(text) < 15 or len(text.split()) < 4:  # a menu's "Home", "World": most links
            continue
        node = link
        for _ in range(3):
            node = node.getparent()
            if node is None:
                break
            if node.tag in _LIST_TAGS:
                boxes[node] = None
    doomed = [box for box in boxes if _teaser_list(box, here)]
    dropped = sum(word_count(box.text_content()) for box in doomed if not any(b in doomed for b in box.iterancestors()))
    for element in doomed:
        parent = element.getparent()
        if parent is None:
            continue
        element.drop_tree()
        # and the box it leaves holding only its heading ("Popular now" above nothing)
        while parent.tag in {"div", "section", "aside"} and parent.getparent() is not None and \
                not (parent.text or "").strip() and all(child.tag in _HEADINGS for child in parent):
            parent, gone = parent.getparent(), parent
            gone.drop_tree()
    return dropped


def _this_page(url: str) -> frozenset[str]:
    """The spellings of a link to the page itself: its URL and its path (a query or fragment aside)."""
    bare = url.partition("#")[0].partition("?")[0]
    return frozenset({bare, urlsplit(bare).path})


def _teaser_list(box: lxml_html.HtmlElement, here: frozenset[str]) -> bool:
    """Two or more items (headings aside), each a teaser, no paragraph among them, outside the article."""
    items = [child for child in box if isinstance(child.tag, str) and child.tag not in _HEADINGS]
    return len(items) >= 2 and all(item.tag != "p" for item in items) and \
        all(_teaser(item, here) for item in items) and \
        not any(e.tag == "article" or e.get("itemprop") == "articleBody" for e in box.iterancestors())


def _teaser(item: lxml_html.HtmlElement, here: frozenset[str]) -> bool:
    """A headline link (four words or more) to another page that the item starts with, and not much more
    (60 words): no more of the item is read than that takes."""
    links = list(itertools.islice((a for a in item.iter("a") if a.get("href")), 2))
    if len(links) != 1:
        return False
    words: list[str] = []
    for piece in item.itertext():
        words += piece.split()
        if len(words) > 60:
            return False
    headline = links[0].text_content().split()
    target = links[0].get("href", "").strip().partition("#")[0].partition("?")[0]  # "", "?post=2": this page
    return len(headline) >= 4 and words[:len(headline)] == headline and bool(target) and target not in here


#: Scripts written without spaces between words (Han, Hiragana, Katakana): each character counts as a
#: word, as word processors count them. By spaces alone, eight paragraphs of Chinese were "8 words",
#: under the minimum, and the article was never loaded.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def word_count(text: str | None) -> int:
    """Words of a text: runs between spaces, and each character of a script that writes none."""
    if not text:
        return 0
    if text.isascii() or _UNSPACED.search(text) is None:
        return len(text.split())
    return len(_UNSPACED.findall(text)) + len(_UNSPACED.sub(" ", text).split())



def _best_text(tree: lxml_html.HtmlElement, url: str, options: ExtractSettings, meta: Extracted,
               enough: int) -> Extracted | None:
    """trafilatura's configurations in turn, until one finds ``enough`` words: the longest text found."""
    best: Extracted | None = None
    for method, opts in _chain(options):
        try:
            text = _text(tree, url, opts)
        except Exception as exc:  # trafilatura raises many kinds on broken markup: this page only
            log.warning("url=%s method=%s extraction raised %r", url, method, exc)
            text = None
        text = _tidy(_without_headline(text, meta.title))
        if text and word_count(text) > word_count(best.text if best else None):
            best = replace(meta, text=text, method=method)
        if best is not None and word_count(best.text) >= enough:
            break
    return best


def extract_page(
    body: bytes,
    url: str,
    *,
    options: ExtractSettings | None = None,
    feed_content: str | None = None,
    feed_summary: str | None = None,
) -> Extracted:
    """The best text we can get for one page, or ExtractionError saying why there is none."""
    options = options or ExtractSettings()
    if not body.strip():
        raise ExtractionError(f"page {url!r} is empty")
    tree = parse_page(body)
    best: Extracted | None = None
    if tree is None:
        log.warning("url=%s: not parseable as HTML (%d bytes)", url, len(body))
    else:
        meta = _metadata(tree, url)
        enough = _enough_words(options, feed_content)
        dropped = _drop_teaser_lists(tree, url)
        best = _best_text(tree, url, options, meta, enough)
        found = word_count(best.text if best else None)
        if dropped and found < enough <= found + dropped:
            # Too little left, and the lists would make up for it: what looked like teasers was the page's
            # text (a briefing of linked headlines outside any <article>). The page as it came, then:
            # parsing and extracting it again is the rare case (a page short of its feed's text for other
            # reasons, a paywall, is not read twice unless its lists could close the gap).
            again = parse_page(body)
            whole = _best_text(again, url, options, meta, enough) if again is not None else None
            if whole is not None and word_count(whole.text) > word_count(best.text if best else None):
                best = whole
        if best is None:
            best = meta  # no text, but the metadata still serves the feed fallbacks below
    if best is None or word_count(best.text) < options.min_words:
        for method, fragment in (("feed-content", feed_content), ("feed-summary", feed_summary)):
            text = html_to_text(fragment) if fragment else ""
            if word_count(text) >= options.min_words and word_count(text) > word_count(best.text if best else None):
                best = replace(best, text=text, method=method) if best else Extracted(text=text, method=method)
                break
    words = word_count(best.text if best else None)
    if best is None or words < MIN_USABLE_WORDS:
        tried = "trafilatura" + (", feed content" if feed_content else "") + (", feed summary" if feed_summary else "")
        raise ExtractionError(
            f"no article text in {url!r}: {words} words after {tried} (need {MIN_USABLE_WORDS});"
            f" page of {len(body)} bytes"
        )
    return best
