"""robots.txt, per host, parsed with protego and cached for the life of one fetcher (one batch).

Fetched through the same guarded client as everything else. What an answer means follows RFC 9309:

- 2xx: the rules apply (at most 500 KiB of them are read, as Google does);
- 4xx (no robots.txt, or forbidden): everything is allowed;
- 5xx, a timeout or a refused connection: the site is unreachable, so nothing is fetched from it in
  this batch: ``allowed`` raises a :class:`FetchError` with reason ``connect``, which leaves the pages'
  entries pending for the next run (asking again) rather than failing them for good;
- a Crawl-delay for our user agent raises the host's minimum delay between requests (at most 60 s).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from protego import Protego

from sitrep.errors import FetchError
from sitrep.logctx import subject
from sitrep.netguard import url_origin

if TYPE_CHECKING:
    from sitrep.fetch import Fetcher

__all__ = ["MAX_ROBOTS_BYTES", "RobotsCache", "agent_token"]

log = logging.getLogger(__name__)

MAX_ROBOTS_BYTES = 500 * 1024
_MAX_CRAWL_DELAY = 60.0


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched on: ``sitrep`` in ``sitrep/0.1 (+https://...)``."""
    return user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "*"


class _AllowAll:
    def can_fetch(self, url: str, user_agent: str) -> bool:
        return True

    def crawl_delay(self, user_agent: str) -> None:
        return None


class _Unreachable(_AllowAll):
    def __init__(self, why: str):
        self.why = why

    def can_fetch(self, url: str, user_agent: str) -> bool:
        raise FetchError(f"can't fetch {url!r}: its robots.txt is unreachable ({self.why}); retried next run",
                         url=url, reason="connect")


class RobotsCache:
    """``allowed(url)``: may our user agent fetch this URL? One robots.txt request per host.

    Raises :class:`FetchError` (reason ``connect``) while the host's robots.txt is unreachable.
    """

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher
        self.token = agent_token(fetcher.settings.user_agent)
        self._rules: dict[str, Protego | _AllowAll] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str) -> bool:
        origin = url_origin(url)
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch per host even when many pages of it ask at once
            rules = self._rules.get(origin)
            if rules is None:
                rules = self._rules[origin] = self._load(origin)
        return bool(rules.can_fetch(url, self.token))

    def known(self, url: str) -> bool | None:
        """``allowed(url)`` if the host's robots.txt is already here, else None: never a request (for a
        redirect hop, checked while the request holds its slots)."""
        rules = self._rules.get(url_origin(url))
        return None if rules is None else bool(rules.can_fetch(url, self.token))

    def _load(self, origin: str) -> Protego | _AllowAll:
        robots_url = f"{origin}/robots.txt"
        try:
            response = self.fetcher.get(robots_url, max_bytes=MAX_ROBOTS_BYTES)
        except FetchError as exc:
            if exc.reason == "deferred":  # not tried (the collect's time ran out): nothing to remember
                raise
            log.warning("%s robots.txt unreachable (%s): pages of this host wait for the next run", subject(robots_url), exc)
            return _Unreachable(exc.reason)
        self.fetcher.count("robots_fetched")
        if 400 <= response.status < 500:
            return _AllowAll()
        if response.status >= 500:
            log.warning("%s robots.txt answered HTTP %d: pages of this host wait for the next run",
                        subject(robots_url), response.status)
            return _Unreachable(f"HTTP {response.status}")
        if response.status != 200:
            return _AllowAll()
        rules = Protego.parse(response.body.decode("utf-8", errors="replace"))
        delay = rules.crawl_delay(self.token)
        if delay:
            self.fetcher.slow_down(robots_url, min(float(delay), _MAX_CRAWL_DELAY))
        return rules
