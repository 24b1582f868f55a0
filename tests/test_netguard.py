"""The SSRF guard: addresses in every spelling, checked before any connection, at every hop."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import replace

import pytest

from sitrep import pipeline, sources
from sitrep.errors import BlockedURLError, ConfigError
from sitrep.fetch import Fetcher
from sitrep.netguard import AddressPolicy, GuardedTransport, check_url, is_public_address, parse_ip_literal
from sitrep.settings import FetchSettings
from tests.conftest import Site


class Listener:
    """A bare TCP socket on loopback that counts the connections made to it (it should see none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def guarded():
    """Fetch settings with the guard ON, as in production."""
    return FetchSettings(allow_private_hosts=False, retries=0, respect_robots=False, per_host_delay=0,
                         connect_timeout=2, read_timeout=2, total_timeout=5)


@pytest.mark.parametrize("host, address", [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
    ("169.254.169.254", "169.254.169.254"),
    ("example.com", None),
    ("256.1.1.1", None),
    ("1.2.3.4.5", None),
    ("08.1.1.1", None),  # not octal: a name, left to the resolver (and to the connect-time check)
])
def test_address_literals_are_read_as_a_resolver_reads_them(host, address):
    found = parse_ip_literal(host)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fec0::1", "ff02::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::",
])
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert is_public_address(address)


@pytest.mark.parametrize("spelling", [
    "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "127.0.0.1",
])
def test_loopback_in_every_spelling_is_refused_before_any_connection(guarded, listener, spelling):
    url = f"http://{spelling}:{listener.port}/feed.xml"
    with Fetcher(guarded) as fetcher, pytest.raises(BlockedURLError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "blocked-address"
    assert fetcher.stats["blocked"] == 1
    assert listener.accepted == 0


def test_the_metadata_address_is_refused_before_any_connection(guarded):
    with Fetcher(guarded) as fetcher, pytest.raises(BlockedURLError) as caught:
        fetcher.get("http://169.254.169.254/latest/meta-data/")
    assert caught.value.reason == "blocked-address"
    assert "169.254.169.254" in str(caught.value)


def test_a_name_resolving_to_loopback_is_refused_at_connect(guarded, listener):
    """No literal to read in the URL: the backend checks the address it resolved and would connect to."""
    with Fetcher(guarded) as fetcher, pytest.raises(BlockedURLError) as caught:
        fetcher.get(f"http://localhost:{listener.port}/")
    assert caught.value.reason == "blocked-address"
    assert listener.accepted == 0


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:70/", "scheme"),
    ("http:///nohost", "url"),
    ("http://user:secret@example.com/", "url"),
])
def test_urls_no_fetch_should_make(url, reason):
    with pytest.raises(BlockedURLError) as caught:
        check_url(url, AddressPolicy())
    assert caught.value.reason == reason


@pytest.fixture
def allow_site(guarded, site):
    """The guard ON, with exactly the test site's address:port let through (SITREP_ALLOWED_HOSTS)."""
    return replace(guarded, allowed_hosts=(site.base.removeprefix("http://"),))


def test_an_allowed_address_port_is_fetched_with_the_guard_on(allow_site, site):
    url = site.add("/ok", "<html>ok</html>")
    with Fetcher(allow_site) as fetcher:
        assert fetcher.get(url).status == 200


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:{other}/admin",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://2130706433:{other}/",
    "http://[::ffff:127.0.0.1]:{other}/",
    "http://localhost:{other}/",
])
def test_a_redirect_hop_to_a_blocked_address_is_refused(allow_site, site, listener, target):
    url = site.add("/jump", status=302, headers={"Location": target.format(other=listener.port)})
    with Fetcher(allow_site) as fetcher, pytest.raises(BlockedURLError) as caught:
        fetcher.get(url)
    assert caught.value.reason == "blocked-address"
    assert site.count("/jump") == 1  # the first hop was allowed and made
    assert listener.accepted == 0  # the second never left the process


def test_an_odd_spelling_of_an_allowed_address_is_refused(allow_site, site):
    port = site.base.rsplit(":", 1)[1]
    with Fetcher(allow_site) as fetcher, pytest.raises(BlockedURLError):
        fetcher.get(f"http://2130706433:{port}/ok")
    assert site.hits == []


def test_allowed_hosts_must_be_address_port_pairs():
    with pytest.raises(ConfigError, match="address:port"):
        AddressPolicy.build(allow_private=False, allowed_hosts=["example.com:80"])
    assert AddressPolicy.build(allow_private=False, allowed_hosts=["[::1]:8080"]).permits("::1", 8080)


def test_a_refused_feed_is_recorded_not_raised_through_the_batch(settings, conn, site):
    from tests.pages import Item, rss

    good = site.add("/rss.xml", rss([Item(title="t", link=site.url("/a"), guid="a")]),
                    headers={"Content-Type": "application/rss+xml"})
    sources.add_feeds(conn, [sources.FeedSpec(url=good, name="good"),
                             sources.FeedSpec(url="http://169.254.169.254/latest/meta-data/", name="metadata")])
    ids = [row[0] for row in conn.execute("SELECT source_id FROM sources ORDER BY source_id")]
    conn.commit()
    guarded = replace(settings, fetch=replace(settings.fetch, allow_private_hosts=False,
                                              allowed_hosts=(site.base.removeprefix("http://"),)))
    counts = pipeline.poll_batch(guarded, ids, run_id="guarded")
    assert (counts["feeds"], counts["blocked"], counts["new"]) == (2, 1, 1)
    rows = dict(conn.execute("SELECT s.name, l.blocked FROM poll_log l JOIN sources s USING (source_id)").fetchall())
    assert rows == {"good": False, "metadata": True}


def test_every_guarded_transport_shares_one_tls_context_that_verifies_certificates(guarded, site):
    """Built once per process (loading the CA bundle costs 50 ms, and the Fetcher makes a transport per
    origin), and still httpx's verifying default: hostnames checked, certifi's CAs loaded."""
    other = Site()
    try:
        sites = (site, other)
        settings = replace(guarded, allowed_hosts=tuple(s.base.removeprefix("http://") for s in sites))
        with Fetcher(settings) as fetcher:
            for s in sites:
                assert fetcher.get(s.add("/ok", "<html>ok</html>")).status == 200
            contexts = {id(pool.client._transport._pool._ssl_context) for pool in fetcher._pools.values()}
            assert len(fetcher._pools) == 2
    finally:
        other.close()
    context = GuardedTransport()._pool._ssl_context
    assert contexts == {id(context)}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 100
