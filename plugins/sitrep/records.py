"""The records passed between pipeline stages: plain, typed, picklable (they cross process pools)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Extracted", "FeedEntry", "PageJob", "Rejected", "Report", "Source"]


@dataclass(frozen=True)
class Source:
    """A feed we poll, with what the last poll left behind for a conditional GET."""

    source_id: int
    name: str
    feed_url: str
    host: str
    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None
    validators_trusted: bool = True


@dataclass(frozen=True)
class FeedEntry:
    """One item of a feed, identified by its GUID, else its link (``entry_key``)."""

    entry_key: str
    link: str | None
    title: str | None = None
    summary: str | None = None
    content: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    #: The item's own updated date, else its published one: a later one on a known entry means the
    #: article changed, and its page is fetched again (sources.record_entries).
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PageJob:
    """Everything needed to turn one fetched page (or file) into a report, in a worker process."""

    entry_id: int
    source_id: int
    url: str
    final_url: str
    body: bytes
    fetched_at: datetime
    page_id: int | None = None
    feed_title: str | None = None
    feed_summary: str | None = None
    feed_content: str | None = None
    feed_author: str | None = None
    feed_published_at: datetime | None = None
    #: Set for plain-text inputs (seed files): the text is taken as it is, no HTML extraction.
    plain_text: str | None = None
    plain_date: datetime | None = None
    #: The HTTP answer the body came with, stored with the raw page.
    status: int = 200
    content_type: str = "text/html"


@dataclass
class Extracted:
    """What extraction found on a page, before normalization."""

    text: str
    method: str
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    date: str | None = None
    sitename: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A normalized, enriched report ready to stage; the columns of staged_reports in order."""

    entry_id: int
    source_id: int
    page_id: int | None
    url: str
    canonical_url: str
    title: str | None
    authors: list[str]
    published_at: datetime | None
    published_at_source: str | None
    fetched_at: datetime | None
    language: str | None
    text: str
    summary: str | None
    word_count: int
    content_sha256: str
    extraction_method: str
    sitename: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    relevance: float | None = None
    event_types: list[str] = field(default_factory=list)
    places: list[dict[str, Any]] = field(default_factory=list)
    actors: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    #: LSH band keys of the text's MinHash (sitrep.dedup.band_keys), computed in the worker.
    minhash: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    """A page that produced no report, and why (recorded on its entry, never loaded empty)."""

    entry_id: int
    url: str
    reason: str
