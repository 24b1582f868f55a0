"""robots.txt: fetched once per host through the guarded client, obeyed for pages."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sitrep.errors import BlockedURLError, FetchError
from sitrep.fetch import Fetcher
from sitrep.robots import agent_token
from sitrep.settings import FetchSettings
from tests.conftest import Site

UA = "sitrep/0.1 (+https://example.org/sitrep; conflict-news ingestion)"


@pytest.fixture
def fetch_settings():
    return FetchSettings(allow_private_hosts=True, per_host_delay=0.0, per_host_concurrency=8, retries=0,
                         connect_timeout=1.0, read_timeout=1.0, total_timeout=3.0, user_agent=UA)


def _pages(site, *paths: str) -> list[str]:
    return [site.add(p, f"<html><body>{p}</body></html>") for p in paths]


def test_a_disallowed_page_is_skipped_unfetched_and_counted(site, fetch_settings):
    site.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
    urls = _pages(site, "/news/1.html", "/private/2.html", "/news/3.html")
    with Fetcher(fetch_settings) as fetcher:
        results = fetcher.get_many(urls)
    assert [getattr(r, "status", None) for r in results] == [200, None, 200]
    assert isinstance(results[1], BlockedURLError) and results[1].reason == "robots"
    assert site.count("/private/2.html") == 0
    assert site.count("/robots.txt") == 1  # cached for the fetcher's life
    assert fetcher.stats["robots_disallowed"] == 1


def test_rules_for_our_user_agent_apply(site, fetch_settings):
    site.add("/robots.txt", "User-agent: sitrep\nDisallow: /\n\nUser-agent: *\nAllow: /\n",
             headers={"Content-Type": "text/plain"})
    [url] = _pages(site, "/news/1.html")
    with Fetcher(fetch_settings) as fetcher:
        [result] = fetcher.get_many([url])
    assert isinstance(result, BlockedURLError)
    with Fetcher(replace(fetch_settings, user_agent="otherbot/2.0")) as fetcher:
        [result] = fetcher.get_many([url])
    assert result.status == 200


@pytest.mark.parametrize("status, allowed", [(404, True), (403, True), (500, False), (503, False)])
def test_what_a_missing_or_failing_robots_txt_means(site, fetch_settings, status, allowed):
    site.add("/robots.txt", "nope", status=status)
    [url] = _pages(site, "/news/1.html")
    with Fetcher(fetch_settings) as fetcher:
        [result] = fetcher.get_many([url])
    assert (getattr(result, "status", None) == 200) is allowed
    if not allowed:  # unreachable, not forbidden: the entry stays pending for the next run
        assert isinstance(result, FetchError) and result.reason == "connect" and "robots.txt" in str(result)
        assert site.count("/news/1.html") == 0


def test_robots_can_be_ignored_by_setting(site, fetch_settings):
    site.add("/robots.txt", "User-agent: *\nDisallow: /\n", headers={"Content-Type": "text/plain"})
    [url] = _pages(site, "/news/1.html")
    with Fetcher(replace(fetch_settings, respect_robots=False)) as fetcher:
        [result] = fetcher.get_many([url])
    assert result.status == 200 and site.count("/robots.txt") == 0


def test_a_crawl_delay_slows_the_host_down(site, fetch_settings):
    site.add("/robots.txt", "User-agent: *\nCrawl-delay: 2\n", headers={"Content-Type": "text/plain"})
    [url] = _pages(site, "/news/1.html")
    with Fetcher(fetch_settings) as fetcher:
        assert fetcher.robots.allowed(url)
        assert fetcher._gate(url).delay == 2.0


@pytest.mark.parametrize("ua, token", [(UA, "sitrep"), ("Mozilla/5.0 (X11)", "Mozilla"), ("mybot", "mybot"), ("", "*")])
def test_the_robots_token_is_the_product_name(ua, token):
    assert agent_token(ua) == token


def test_a_redirect_to_a_page_another_hosts_robots_txt_disallows_is_not_followed(site, fetch_settings):
    other = Site()
    try:
        other.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
        [secret, public] = _pages(other, "/private/page.html", "/news/page.html")
        site.add("/go-private", status=302, headers={"Location": secret})
        site.add("/go-public", status=302, headers={"Location": public})
        with Fetcher(fetch_settings) as fetcher:
            blocked, followed = fetcher.get_many([site.url("/go-private"), site.url("/go-public")])
        assert isinstance(blocked, BlockedURLError) and blocked.reason == "robots"
        assert "redirected to" in str(blocked)
        assert followed.status == 200 and followed.final_url == public
        assert other.count("/private/page.html") == 0 and other.count("/news/page.html") == 1
        assert other.count("/robots.txt") == 1
    finally:
        other.close()
