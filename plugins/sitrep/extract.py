"""Page bytes -> article text and metadata, with trafilatura and a recorded fallback chain.

trafilatura takes the bytes and does its own encoding detection. When the main configuration
returns too little, a recall-oriented configuration is tried, then the feed entry's own content; the
step that produced the text is recorded as ``extraction_method``. A page that yields nothing usable
raises :class:`ExtractionError` with the reason; it is never loaded as an empty report.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import trafilatura
from lxml import html as lxml_html

from sitrep.errors import ExtractionError
from sitrep.records import Extracted

__all__ = ["ExtractOptions", "MIN_WORDS", "extract_page", "html_to_text"]

log = logging.getLogger(__name__)

#: Below this many words an extraction counts as failed and the next step of the chain is tried.
MIN_WORDS = 40


@dataclass(frozen=True)
class ExtractOptions:
    """trafilatura's switches, as settings (see bench/ for how the defaults were chosen)."""

    fast: bool = False
    favor_precision: bool = False
    favor_recall: bool = False
    include_tables: bool = True
    include_comments: bool = False


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _run(body: bytes, url: str, options: ExtractOptions, method: str) -> Extracted | None:
    doc = trafilatura.bare_extraction(
        body,
        url=url,
        fast=options.fast,
        favor_precision=options.favor_precision,
        favor_recall=options.favor_recall,
        include_tables=options.include_tables,
        include_comments=options.include_comments,
        with_metadata=True,
    )
    if doc is None or not getattr(doc, "text", None):
        return None
    authors = [a.strip() for a in re.split(r";|\band\b", doc.author or "") if a.strip()]
    tags = [t.strip() for t in (doc.tags or []) + (doc.categories or []) if t and t.strip()]
    return Extracted(
        text=doc.text,
        method=method,
        title=doc.title,
        authors=authors,
        date=doc.date,
        sitename=doc.sitename,
        language=doc.language,
        canonical_url=doc.url if doc.url and doc.url != url else doc.url,
        description=doc.description,
        tags=list(dict.fromkeys(tags)),
    )


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (a feed's content:encoded or summary)."""
    if "<" not in fragment:
        return fragment.strip()
    try:
        tree = lxml_html.fragment_fromstring(fragment, create_parent="div")
    except (ValueError, lxml_html.etree.ParserError):
        return re.sub(r"<[^>]+>", " ", fragment).strip()
    blocks = [" ".join(el.text_content().split()) for el in tree.iter("p", "li", "h2", "h3", "blockquote")]
    text = "\n".join(b for b in blocks if b)
    return text or " ".join(tree.text_content().split())


def extract_page(
    body: bytes,
    url: str,
    *,
    options: ExtractOptions = ExtractOptions(),
    feed_content: str | None = None,
    feed_summary: str | None = None,
) -> Extracted:
    """The best text we can get for one page, or ExtractionError saying why there is none."""
    if not body.strip():
        raise ExtractionError(f"page {url!r} is empty")
    best: Extracted | None = None
    for method, opts in (
        ("trafilatura", options),
        ("trafilatura-recall", ExtractOptions(favor_recall=True, include_tables=options.include_tables)),
    ):
        try:
            result = _run(body, url, opts, method)
        except Exception as exc:  # trafilatura raises many kinds on broken markup; one page only
            log.warning("extraction raised on url=%s method=%s: %r", url, method, exc)
            result = None
        if result is not None and (best is None or _words(result.text) > _words(best.text)):
            best = result if best is None else _keep_metadata(result, best)
        if best is not None and _words(best.text) >= MIN_WORDS:
            return best
    for method, fragment in (("feed-content", feed_content), ("feed-summary", feed_summary)):
        if fragment:
            text = html_to_text(fragment)
            if _words(text) >= MIN_WORDS and _words(text) > _words(best.text if best else None):
                base = best or Extracted(text="", method=method)
                base.text, base.method = text, method
                return base
    if best is not None and _words(best.text) > 0:
        return best  # short but real (a brief wire item): normalization decides
    raise ExtractionError(f"no article text found in {url!r} (page of {len(body)} bytes)")


def _keep_metadata(result: Extracted, previous: Extracted) -> Extracted:
    """A later step's text with the earlier step's metadata where the later one has none."""
    for name in ("title", "date", "sitename", "canonical_url", "description", "language"):
        if getattr(result, name) is None:
            setattr(result, name, getattr(previous, name))
    result.authors = result.authors or previous.authors
    result.tags = result.tags or previous.tags
    return result
