"""Who a log line is about: the feed whose URL this thread is fetching.

A retry, a redirect or a robots.txt problem is logged deep in the fetcher, which knows only the URL;
an operator reading the log of a run over hundreds of feeds needs the feed too (``feed=... url=...``).
The caller that knows the feed says so with :func:`about_feed` around its fetch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["about_feed", "subject"]

_FEED: ContextVar[str | None] = ContextVar("sitrep_feed", default=None)


@contextmanager
def about_feed(feed: str | None) -> Iterator[None]:
    """Log lines of this thread (or task) name ``feed`` until the block ends."""
    token = _FEED.set(feed)
    try:
        yield
    finally:
        _FEED.reset(token)


def subject(url: str) -> str:
    """``feed=<name> url=<url>`` inside :func:`about_feed`, else ``url=<url>``."""
    feed = _FEED.get()
    return f"url={url}" if feed is None else f"feed={feed} url={url}"
