"""sitrep's exceptions: every one says what failed, where, and what to do.

The tree::

    SitrepError
     +-- ConfigError        a setting or a file the user gave is wrong
     +-- DatabaseError      PostgreSQL cannot be reached, started or migrated
     +-- FetchError         one URL could not be fetched (recorded per item, never fails a batch)
     |    +-- BlockedURLError   refused by the SSRF guard or robots.txt
     +-- FeedError          a feed's bytes could not be parsed into entries
     +-- ExtractionError    a page yielded no usable article text

Errors about one item (a feed, a page) are recorded with its URL and the batch goes on; errors about
the whole step propagate so that Airflow retries the task.
"""

from __future__ import annotations

__all__ = [
    "BlockedURLError",
    "ConfigError",
    "DatabaseError",
    "ExtractionError",
    "FeedError",
    "FetchError",
    "SitrepError",
]


class SitrepError(Exception):
    """Base class: the message is one line a user can act on."""


class ConfigError(SitrepError):
    """A setting, an argument or an input file is wrong."""


class DatabaseError(SitrepError):
    """PostgreSQL is unreachable, will not start, or cannot be migrated."""


class FetchError(SitrepError):
    """One URL could not be fetched; ``reason`` is a short machine-friendly code."""

    def __init__(self, message: str, *, url: str, reason: str = "error", status: int | None = None):
        super().__init__(message)
        self.url = url
        self.reason = reason
        self.status = status


class BlockedURLError(FetchError):
    """The URL points at an address or path we refuse to fetch."""


class FeedError(SitrepError):
    """A feed body could not be parsed at all."""


class ExtractionError(SitrepError):
    """A page produced no article text worth loading."""
