"""`make demo` end to end: the offline corpus on loopback, the real DAG, the printed result."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from sitrep import demo
from sitrep.settings import PROJECT_ROOT


def _sitrep(settings, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITREP_DATABASE_URL": str(settings.database_url), "SITREP_HOME": str(settings.home),
           **(extra or {})}
    return subprocess.run([sys.executable, "-m", "sitrep.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=PROJECT_ROOT)


def test_demo_corpus_is_served_with_placeholders_resolved(demo_sites):
    import httpx

    assert len(demo_sites) >= 3
    for site in demo_sites:
        feed = httpx.get(site.feed_url, timeout=5)
        assert feed.status_code == 200 and "{{BASE" not in feed.text and site.base_url in feed.text
        again = httpx.get(site.feed_url, headers={"If-None-Match": feed.headers["etag"]}, timeout=5)
        assert again.status_code == 304
    assert httpx.get(demo_sites[0].base_url + "/no/such/page.html", timeout=5).status_code == 404


def test_demo_server_serves_nothing_outside_its_site(demo_sites):
    # http.client sends the path as it is (httpx would remove the dot segments): files that exist
    # beside the site, in another site and above the corpus, must all be 404.
    import http.client

    site, other = demo_sites[0], demo_sites[1]
    host, port = site.server.server_address[:2]
    inside = f"/{site.feed_path}"
    for path in (inside, f"/../{other.root.name}/{other.feed_path}", "/../../MANIFEST.yaml",
                 "/%2e%2e/%2e%2e/MANIFEST.yaml", f"/..%2f{other.root.name}/{other.feed_path}"):
        client = http.client.HTTPConnection(host, port, timeout=5)
        try:
            client.request("GET", path)
            status = client.getresponse().status
        finally:
            client.close()
        assert status == (200 if path == inside else 404), path


def test_make_demo_loads_the_corpus_and_a_second_demo_adds_nothing(settings, conn):
    result = _sitrep(settings, "demo")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reports_v1:" in result.stdout and "Query it yourself" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr  # the newcomer's first screen: no stack traces

    manifest = yaml.safe_load((demo.DEMO_ROOT / "MANIFEST.yaml").read_text())
    articles = manifest["articles"]
    total = conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0]
    # Every page of the corpus is one report (the tracking-parameter URL is an alias), plus the seed file:
    # nothing lost, from the malformed feed (Steppe Herald's) either.
    assert total == len(articles) + 1
    by_site = dict(conn.execute("SELECT source, count(*) FROM reports_v1 WHERE extraction_method <> 'file'"
                                " GROUP BY source").fetchall())
    assert by_site == {site["name"]: site["articles"] for site in manifest["sites"]}
    assert conn.execute("SELECT count(*) FROM reports_v1 WHERE extraction_method = 'file'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM report_urls WHERE url LIKE '%%utm_source=rss%%'").fetchone()[0] == 1
    pending = conn.execute("SELECT count(*) FROM entries WHERE status = 'pending'").fetchone()[0]
    assert pending == 0
    conn.commit()

    # Its feeds are served only while it runs: off the schedule after it (a later `sitrep ingest` polled
    # them and failed on each, until they were disabled after ten failures), back on at the next demo.
    states = conn.execute("SELECT enabled, disabled_reason FROM sources WHERE kind = 'feed'").fetchall()
    assert len(states) == len(manifest["sites"]) and all(not on and "a demo feed" in why for on, why in states)
    assert "The demo's reports stay in it and its feeds are disabled" in result.stdout
    conn.commit()

    again = _sitrep(settings, "demo")
    assert again.returncode == 0, again.stderr[-3000:]
    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == total  # nothing loaded twice
    polled = conn.execute("SELECT count(DISTINCT run_id) FROM poll_log WHERE run_id IS NOT NULL").fetchone()[0]
    assert polled == 2  # the second demo polled its feeds again
