"""The HTTP client, against a loopback server that misbehaves on purpose."""

from __future__ import annotations

import gzip
import threading
import time
import tracemalloc
import zlib
from dataclasses import replace
from datetime import UTC, datetime

import psutil
import pytest

from sitrep import fetch
from sitrep.errors import FetchError
from sitrep.fetch import Fetcher, html_charset, retry_after_seconds
from sitrep.settings import FetchSettings
from tests.conftest import Site
from tests.pages import drip

MB = 1024 * 1024


@pytest.fixture
def fetch_settings():
    """Loopback allowed, no politeness delay, short timeouts: fast tests of slow servers."""
    return FetchSettings(allow_private_hosts=True, per_host_delay=0.0, per_host_concurrency=8, retries=1,
                         connect_timeout=1.0, read_timeout=1.0, total_timeout=3.0, max_retry_wait=2.0,
                         respect_robots=False)


def _send(handler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {"Content-Type": "text/html"}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _flaky(statuses: list[int], headers: dict[str, str] | None = None):
    """A handler answering with the given statuses in turn, then 200."""
    answers = iter(statuses)

    def handle(h):
        status = next(answers, 200)
        _send(h, status, b"<html><body>ok</body></html>" if status == 200 else b"busy",
              {"Content-Type": "text/html", **(headers or {})} if status != 200 else None)

    return handle


def test_500_then_success_is_retried(site, fetch_settings):
    url = site.add("/flaky", handler=_flaky([500]))
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get(url)
    assert (response.status, response.attempts, site.count("/flaky")) == (200, 2, 2)
    assert fetcher.stats["retries"] == 1


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_4xx_is_not_retried(site, fetch_settings, status):
    url = site.add("/gone", b"no", status=status)
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get(url)
    assert (response.status, site.count("/gone")) == (status, 1)


def test_429_with_a_short_retry_after_is_waited_for(site, fetch_settings):
    url = site.add("/limited", handler=_flaky([429], {"Retry-After": "1"}))
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get(url)
    assert (response.status, site.count("/limited")) == (200, 2)


def test_429_with_a_long_retry_after_is_returned_not_slept_through(site, fetch_settings):
    url = site.add("/limited", b"slow down", status=429, headers={"Retry-After": "3600"})
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get(url)
    assert (response.status, response.retry_after, site.count("/limited")) == (429, 3600.0, 1)


def test_retry_after_as_an_http_date():

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:02:00 GMT", now=now) == 120.0
    assert retry_after_seconds("soon", now=now) is None


def test_an_odd_retry_after_is_ignored_and_a_huge_one_capped():
    now = datetime(2026, 11, 27, tzinfo=UTC)
    assert retry_after_seconds("\u00b2") is None  # a digit to str.isdigit(), not to float()
    assert retry_after_seconds("9" * 400) == fetch.MAX_RETRY_AFTER
    assert retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT", now=now) == fetch.MAX_RETRY_AFTER
    assert retry_after_seconds("120") == 120.0


def test_a_503_with_an_odd_retry_after_is_an_answer_not_a_crash(site, fetch_settings):
    def busy(h):
        h.send_response(503)
        h.send_header("Retry-After", "\u00b2")  # sent as the latin-1 byte 0xb2
        h.send_header("Content-Length", "0")
        h.end_headers()

    url = site.add("/busy", handler=busy)
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get(url)
    assert response.status == 503 and response.retry_after is None


def test_a_retry_past_the_tasks_budget_leaves_the_last_answer_standing(site, fetch_settings):
    # The retry was refused as "deferred" (pending, no attempt counted): a page or feed that always fails
    # late in a run was never recorded as failing, so never backed off.
    url = site.add("/busy", b"", status=503)
    with Fetcher(replace(fetch_settings, retries=2), not_after=time.monotonic() + 0.2) as fetcher:
        response = fetcher.get(url)  # the retry's backoff (0.25 s or more) ends past the budget
    assert (response.status, response.attempts, site.count("/busy")) == (503, 1, 1)


def test_read_timeout_is_retried_then_reported(site, fetch_settings):
    def hang(h):
        time.sleep(2.5)
        _send(h, 200, b"late")

    url = site.add("/hang", handler=hang)
    with Fetcher(fetch_settings) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "timeout"
    assert site.count("/hang") == 2  # one retry


def test_a_slow_drip_is_cut_at_the_total_timeout(site, fetch_settings):
    def drip(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "1000")
        h.end_headers()
        try:
            for _ in range(1000):  # one byte every 50 ms: never a read timeout, 50 s in all
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    url = site.add("/drip", handler=drip)
    with Fetcher(replace(fetch_settings, retries=0, total_timeout=1.0)) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "timeout"
    assert "total timeout" in str(caught.value)


def test_a_stall_before_the_headers_is_cut_at_the_total_timeout(site, fetch_settings):
    def late(h):
        time.sleep(1.5)  # within the read timeout (2 s), beyond the total (0.5 s)
        _send(h, 200, b"late")

    url = site.add("/late", handler=late)
    settings = replace(fetch_settings, retries=0, read_timeout=2.0, total_timeout=0.5)
    with Fetcher(settings) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "timeout"


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_total_timeout(site, fetch_settings):
    # Each byte arrives within the read timeout, so httpx alone would wait as long as the server likes
    # (100 KB of headers allowed: at one byte every 0.3 s, eight hours). This one hangs up after a
    # minute, never having finished its headers: a client without the deadline gets that, not a timeout.
    def headers_drip(h):
        drip(h.wfile, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: ", times=200, every=0.3)
        h.close_connection = True

    url = site.add("/drip-headers", handler=headers_drip)
    settings = replace(fetch_settings, retries=0, read_timeout=1.0, total_timeout=1.5)
    with Fetcher(settings) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "timeout"
    assert "total timeout" in str(caught.value)
    assert site.count("/drip-headers") == 1


def test_a_redirect_loop_stops_at_max_redirects(site, fetch_settings):
    site.add("/a", status=302, headers={"Location": "/b"})
    url = site.add("/b", status=301, headers={"Location": "/a"})
    with Fetcher(replace(fetch_settings, max_redirects=4)) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "redirects"
    assert site.count("/a") + site.count("/b") == 5


def test_redirects_are_followed_and_counted(site, fetch_settings):
    site.add("/old", status=301, headers={"Location": "/new"})
    site.add("/new", "<html><body>moved</body></html>")
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get(site.url("/old"))
    assert (response.final_url, response.redirects, response.body) == (site.url("/new"), 1, b"<html><body>moved</body></html>")


def _huge(h):
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", str(60 * MB))
    h.end_headers()
    chunk = b"<p>" + b"a" * (MB - 3)
    try:
        for _ in range(60):
            h.wfile.write(chunk)
    except OSError:
        pass  # the client hung up at its cap, as it should


def test_a_60_mb_body_is_cut_at_the_cap_in_bounded_memory(site, fetch_settings):
    url = site.add("/huge", handler=_huge)
    tracemalloc.start()
    try:
        with Fetcher(replace(fetch_settings, max_page_bytes=2 * MB)) as fetcher:
            response = fetcher.get(url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.truncated and len(response.body) == 2 * MB
    assert peak < 8 * MB


def test_a_gzip_bomb_is_refused_in_bounded_memory(site, fetch_settings):
    bomb = gzip.compress(b"\0" * (100 * MB), 9)  # ~100 KB on the wire
    url = site.add("/bomb", bomb, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with Fetcher(replace(fetch_settings, max_page_bytes=50 * MB)) as fetcher, pytest.raises(FetchError) as caught:
            fetcher.get(url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "bomb"
    assert peak < 6 * MB


def test_bytes_after_the_end_of_a_gzip_stream_are_not_kept(site, fetch_settings):
    # zlib keeps whatever follows the end of the stream in unused_data, counted by no cap: 30 MB of it
    # held in memory before the fix. The page ends where its compressed stream does.
    page = ("<html><body>" + "Shelling reported near the river. " * 200 + "</body></html>").encode()
    url = site.add("/trailer", gzip.compress(page) + b"\0" * (30 * MB),
                   headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with Fetcher(replace(fetch_settings, total_timeout=30.0)) as fetcher:
            response = fetcher.get(url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.body == page and not response.truncated
    assert peak < 8 * MB


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", lambda b: gzip.compress(b)),
    ("deflate", lambda b: zlib.compress(b)),
    ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some servers send it
])
def test_compressed_pages_are_decoded(site, fetch_settings, encoding, compress):
    page = ("<html><body>" + "Shelling reported near the river. " * 200 + "</body></html>").encode()
    url = site.add("/z", compress(page), headers={"Content-Type": "text/html", "Content-Encoding": encoding})
    with Fetcher(fetch_settings) as fetcher:
        assert fetcher.get(url).body == page


def test_an_unknown_content_encoding_is_an_error_not_garbage(site, fetch_settings):
    url = site.add("/br", b"\x0b\x02\x80hello", headers={"Content-Type": "text/html", "Content-Encoding": "br"})
    with Fetcher(fetch_settings) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "encoding"


def test_a_page_that_is_not_html_is_skipped_unread(site, fetch_settings):
    url = site.add("/report.pdf", handler=lambda h: _send(h, 200, b"%PDF" + b"\0" * (5 * MB), {"Content-Type": "application/pdf"}))
    with Fetcher(fetch_settings) as fetcher:
        [response] = fetcher.get_many([url])
    assert response.skipped == "not an HTML page (application/pdf)"
    assert response.body == b""
    assert fetcher.stats["not_html"] == 1


UKRAINIAN = "Київ: обстріл житлового кварталу, загинули двоє людей, ще п'ятеро поранені. "
FRENCH = "Le café où nous étions déjà, à Genève: résumé naïf de la journée, très agitée. "


@pytest.mark.parametrize("text, charset, headers, meta", [
    (FRENCH, "latin-1", "text/html", '<meta charset="iso-8859-1">'),          # no charset header, meta says it
    (FRENCH, "latin-1", "text/html", ""),                                       # nothing declared: detected
    (UKRAINIAN, "cp1251", "text/html", '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'),
    (UKRAINIAN, "cp1251", "text/html", ""),                                     # nothing declared: detected
    (UKRAINIAN, "cp1251", "text/html; charset=windows-1251", '<meta charset="utf-8">'),  # the header wins
    (FRENCH, "utf-8", "text/html", ""),
])
def test_pages_reach_extraction_as_utf8_whatever_their_charset(site, fetch_settings, text, charset, headers, meta):
    page = f"<html><head>{meta}<title>t</title></head><body><p>{text * 20}</p></body></html>"
    url = site.add("/page.html", page.encode(charset), headers={"Content-Type": headers})
    with Fetcher(fetch_settings) as fetcher:
        [response] = fetcher.get_many([url])
    assert text in response.body.decode("utf-8")


@pytest.mark.parametrize("header, meta", [
    ("text/html; charset=base64", ""),           # codecs Python knows that decode no text: never used
    ("text/html", '<meta charset="hex">'),
    ("text/html; charset=undefined", ""),
    ("text/html; charset=rot13", '<meta charset="zip">'),
])
def test_a_charset_that_is_no_text_encoding_is_ignored(site, fetch_settings, header, meta):
    page = f"<html><head>{meta}<title>t</title></head><body><p>{FRENCH * 20}</p></body></html>"
    url = site.add("/odd.html", page.encode("utf-8"), headers={"Content-Type": header})
    with Fetcher(fetch_settings) as fetcher:
        [response] = fetcher.get_many([url])
    assert not isinstance(response, FetchError), response
    assert FRENCH in response.body.decode("utf-8")


def test_a_utf8_bom_wins_and_is_dropped():
    assert html_charset(b"\xef\xbb\xbf<html>", "text/html; charset=latin-1") == "utf-8"


def test_one_failing_url_does_not_stop_the_others(site, fetch_settings):
    good = [site.add(f"/ok/{i}", f"<html><body>page {i}</body></html>") for i in range(5)]
    urls = good[:2] + [site.url("/missing"), "http://169.254.169.254/latest/meta-data/"] + good[2:]
    with Fetcher(replace(fetch_settings, allow_private_hosts=False, allowed_hosts=(site.base.split("//")[1],))) as fetcher:
        results = fetcher.get_many(urls)
    assert [getattr(r, "status", None) for r in results] == [200, 200, 404, None, 200, 200, 200]
    assert isinstance(results[3], FetchError) and results[3].reason == "blocked-address"


def test_at_most_k_requests_per_host_at_once(site, fetch_settings):
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(h):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        _send(h, 200, b"<html><body>ok</body></html>")

    urls = [site.add(f"/slow/{i}", handler=slow) for i in range(8)]
    with Fetcher(replace(fetch_settings, per_host_concurrency=2, global_concurrency=8)) as fetcher:
        results = fetcher.get_many(urls)
    assert all(r.status == 200 for r in results)
    assert state["max"] == 2


def test_a_redirect_to_another_host_waits_for_that_hosts_gate(site, fetch_settings):
    """Politeness is owed to the host that serves the page: many sites' links redirecting to one
    publisher (tracking links, a feed proxy) reach it at most K at a time, each start its delay after
    the one before, however many hosts the redirects come from."""
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "starts": []}

    def slow(h):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            state["starts"].append(time.monotonic())
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        _send(h, 200, b"<html><body>ok</body></html>")

    redirectors = [Site() for _ in range(4)]
    try:
        urls = []
        for n, redirector in enumerate(redirectors):
            for i in range(3):
                target = site.add(f"/story/{n}/{i}", handler=slow)
                urls.append(redirector.add(f"/r/{i}", status=302, headers={"Location": target, "Content-Length": "0"}))
        with Fetcher(replace(fetch_settings, per_host_concurrency=2, per_host_delay=0.05, global_concurrency=12)) as fetcher:
            results = fetcher.get_many(urls)
        assert [(r.status, r.redirects) for r in results] == [(200, 1)] * 12
        assert state["max"] == 2  # 8 at once before: each redirector's slot was held, not the publisher's
        starts = sorted(state["starts"])
        # 0.05 apart, less the jitter, as the server sees them: one pair may arrive together when a thread
        # is scheduled late (a busy CI machine); without the gate, every pair of slots starts at once (6 of 11)
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert sum(gap < 0.025 for gap in gaps) <= 1, gaps
    finally:
        for redirector in redirectors:
            redirector.close()


def test_iter_many_yields_as_pages_arrive_and_fetches_no_further_ahead_than_its_window(site, fetch_settings):
    urls = [site.add(f"/page/{i}", f"<html><body>page {i}</body></html>") for i in range(12)]
    with Fetcher(replace(fetch_settings, global_concurrency=2)) as fetcher:
        pages = fetcher.iter_many(urls, window=3)
        first = next(pages)  # a consumer slower than the network (extraction) holds the rest back
        time.sleep(0.3)
        assert len(site.hits) == 3
        rest = list(pages)
    results = [first, *rest]
    assert sorted(index for index, _, _ in results) == list(range(12))
    assert all(response.status == 200 and response.body == f"<html><body>page {index}</body></html>".encode()
               for index, response, _ in results)
    assert all(seconds > 0 for _, _, seconds in results)  # the fetch thread's CPU time, for the stage table
    assert len(site.hits) == 12


def _connections_to(server: Site) -> int:
    """Our open TCP connections to that server (the client's side of them)."""
    port = server.server.server_address[1]
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def test_each_origin_keeps_its_connections_alive_and_an_unused_one_is_closed(site, fetch_settings, monkeypatch):
    """A pool per origin (httpcore's cost per request grows with the square of a pool's connections);
    a host's connection is reused page after page, and closed once nobody used it for a while."""
    monkeypatch.setattr(fetch, "_POOL_IDLE_SECONDS", 0.3)
    other = Site()
    try:
        first = [site.add(f"/a/{i}", f"<html><body>a {i}</body></html>") for i in range(5)]
        later = other.add("/b", "<html><body>b</body></html>")
        with Fetcher(replace(fetch_settings, per_host_concurrency=1)) as fetcher:
            assert [r.body for r in fetcher.get_many(first)] == [f"<html><body>a {i}</body></html>".encode()
                                                                 for i in range(5)]
            assert _connections_to(site) == 1  # five pages, one kept-alive connection
            time.sleep(0.5)
            assert fetcher.get(later).status == 200
            assert _connections_to(other) == 1
            assert _connections_to(site) == 0  # idle past the limit: closed on the way
        assert _connections_to(other) == 0  # and everything at close
        with pytest.raises(RuntimeError, match="Fetcher is closed"):
            fetcher.get(later)  # a closed client opens nothing again
        assert _connections_to(other) == 0
    finally:
        other.close()


def test_a_host_gets_one_pool_per_lane_and_never_more_connections_than_its_limit(site, fetch_settings):
    """Requests to a host run in the host gate's K lanes, each lane with a pool of its own (one
    connection, reused): K pools and at most K connections, whatever the number of threads; a lane
    is handed back when its request fails inside it."""
    pages = [site.add(f"/p/{i}", f"<html><body>p {i}</body></html>") for i in range(40)]
    broken = site.add("/moved", status=302, headers={"Content-Length": "0"})  # a redirect without Location
    with Fetcher(replace(fetch_settings, per_host_concurrency=3, global_concurrency=12)) as fetcher:
        for _ in range(4):  # more failures than lanes: each hands its lane back
            with pytest.raises(FetchError, match="redirect without Location"):
                fetcher.get(broken)
        results = fetcher.get_many(pages)
        assert [r.body for r in results] == [f"<html><body>p {i}</body></html>".encode() for i in range(40)]
        assert sorted(lane for _, lane in fetcher._pools) == [0, 1, 2]
        assert 1 <= _connections_to(site) <= 3


def test_the_user_agent_is_ours_and_configurable(site, fetch_settings):
    url = site.add("/ua", "<html></html>")
    with Fetcher(replace(fetch_settings, user_agent="sitrep-test/1.0 (+https://example.org/contact)")) as fetcher:
        fetcher.get(url)
    assert site.hits[-1][1]["user-agent"] == "sitrep-test/1.0 (+https://example.org/contact)"


def test_log_lines_deep_in_a_fetch_name_the_feed_its_page_came_from(site, fetch_settings, caplog):
    """A retry or a robots.txt problem is logged where only the URL is known; the operator of hundreds
    of feeds needs to know whose page it was."""
    flaky = site.add("/flaky", handler=_flaky([503]))
    plain = site.add("/plain", handler=_flaky([500]))
    caplog.set_level("INFO", logger="sitrep")
    with Fetcher(replace(fetch_settings, retries=1)) as fetcher:
        assert len(list(fetcher.iter_many([flaky, plain], feeds=["Kyiv Wire", None]))) == 2
    site.add("/robots.txt", b"down", status=500)
    with Fetcher(replace(fetch_settings, retries=0, respect_robots=True)) as fetcher:
        assert len(list(fetcher.iter_many([flaky], feeds=["Kyiv Wire"]))) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"feed=Kyiv Wire url={flaky} HTTP 503: retrying") for line in lines), lines
    assert any(line.startswith(f"url={plain} HTTP 500: retrying") for line in lines), lines
    assert any(line.startswith(f"feed=Kyiv Wire url={site.url('/robots.txt')} robots.txt answered HTTP 500")
               for line in lines), lines
    assert not any("feed=None" in line for line in lines), lines


def _refresh_to(target: str, delay: str = "0") -> str:
    return (f'<html><head><meta content="{delay}; url={target}" http-equiv="Refresh"><title>Redirecting</title>'
            "</head><body><p>Redirecting...</p></body></html>")


def test_a_page_that_refreshes_at_once_is_followed_like_a_redirect_and_guarded_like_one(site, fetch_settings):
    # A redirector's stub (<meta http-equiv="refresh" content="0; url=...">) was taken for the article:
    # "no article text, 0 words", the entry lost.
    article = site.add("/news/real.html", "<html><body><article><p>The article.</p></article></body></html>")
    stub = site.add("/r/1", _refresh_to("/news/real.html"))
    with Fetcher(fetch_settings) as fetcher:
        response = fetcher.get_page(stub)
        assert (response.url, response.final_url, response.redirects) == (stub, article, 1)
        assert b"The article." in response.body and fetcher.stats["meta_refresh"] == 1
        later = site.add("/live", _refresh_to("/news/real.html", delay="300"))  # a page that reloads itself
        noscript = site.add("/ns", '<html><head><noscript><meta http-equiv="refresh" content="0; url=/js-required">'
                                   "</noscript></head><body><article><p>Here.</p></article></body></html>")
        assert fetcher.get_page(noscript).final_url == noscript  # only for browsers without scripts
        assert fetcher.get_page(later).final_url == later
        loop = site.add("/loop/a", _refresh_to("/loop/b"))
        site.add("/loop/b", _refresh_to("/loop/a"))
        with pytest.raises(FetchError, match="meta refreshes") as caught:
            fetcher.get_page(loop)
        assert caught.value.reason == "redirects"
    guarded = replace(fetch_settings, allow_private_hosts=False, allowed_hosts=(site.base.split("//")[1],))
    inside = site.add("/r/2", _refresh_to("http://169.254.169.254/latest/meta-data/"))
    with Fetcher(guarded) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get_page(inside)
    assert caught.value.reason == "blocked-address"


def test_meta_refreshes_and_http_redirects_share_one_budget(site, fetch_settings):
    # 302 -> refresh -> 302 -> 302 -> the article: four hops, each within its own budget of two
    site.add("/r1", status=302, headers={"Location": "/r2"})
    site.add("/r2", _refresh_to("/h1"))
    site.add("/h1", status=302, headers={"Location": "/h2"})
    site.add("/h2", status=302, headers={"Location": "/art"})
    site.add("/art", "<html><body><article><p>The article.</p></article></body></html>")
    with Fetcher(replace(fetch_settings, max_redirects=2)) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.get_page(site.url("/r1"))
    assert caught.value.reason == "redirects"
    with Fetcher(replace(fetch_settings, max_redirects=4)) as fetcher:
        assert fetcher.get_page(site.url("/r1")).redirects == 4
