"""Properties (hypothesis), with modest example counts so the suite stays fast:

- URL normalization (sitrep.normalize.canonical_url) is idempotent, and never maps two different
  articles of the demo corpus together, however their URLs are dressed (tracking parameters, case,
  fragments, default ports, trailing slashes);
- feed-entry identity (sitrep.feeds): parsing is deterministic, keys are unique within a feed and do
  not depend on the order of the items; an item's key survives tracking parameters on its link;
- dedup invariants (sitrep.store / sitrep.dedup), over random sequences of batches of reports with
  near-duplicates: every report is in a story, a story never loses a member, its representative is
  its earliest published member (then the longest, then the first loaded), and every other member's
  duplicate_of points at it (never at a duplicate);
- pages seen again (a few URLs, declared canonicals, texts shared between pages): every batch loads and
  closes its entries on reports, each report's hash and LSH keys are those of its current text, every
  URL maps to a report, and the stories keep the rules above through revisions. (It finds both unique
  violations fixed in 0025f23 and f2051d5 on the code before them.)
"""

from __future__ import annotations

import itertools
import random
import string
from datetime import UTC, datetime, timedelta
from html import escape

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitrep import sources, store
from sitrep.dedup import band_keys, split_keys
from sitrep.demo import DEMO_ROOT
from sitrep.feeds import parse_feed
from sitrep.normalize import canonical_url, content_hash
from sitrep.records import FeedEntry, Report
from sitrep.settings import DedupSettings
from tests.reports import assert_story_invariants

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------- URLs

_SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1, max_size=12)
_HOSTS = st.sampled_from(["127.0.0.1:8001", "www.example.com", "m.kyiv-wire.example", "example.org:443",
                          "EXAMPLE.net", "news.example.co.uk", "[::1]:9000"])
_PARAM = st.tuples(st.sampled_from(["utm_source", "utm_medium", "fbclid", "gclid", "id", "page", "q", "story",
                                    "ref", "amp", "share"]),
                   st.text(alphabet=string.ascii_letters + string.digits, max_size=8))


@st.composite
def urls(draw) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    path = "/".join(draw(st.lists(_SEGMENT, max_size=4)))
    slash = draw(st.sampled_from(["", "/"]))
    params = draw(st.lists(_PARAM, max_size=4))
    query = "?" + "&".join(f"{k}={v}" for k, v in params) if params else ""
    fragment = draw(st.sampled_from(["", "#top", "#comments"]))
    return f"{scheme}://{draw(_HOSTS)}/{path}{slash}{query}{fragment}"


@FAST
@given(urls())
def test_canonical_url_is_idempotent(url):
    once = canonical_url(url)
    assert canonical_url(once) == once


def _demo_articles() -> list[tuple[str, str, str]]:
    """(article id, site, url) of every article page in the demo corpus, on made-up loopback ports."""
    manifest = yaml.safe_load((DEMO_ROOT / "MANIFEST.yaml").read_text(encoding="utf-8"))
    ports = {site["id"]: 8100 + i for i, site in enumerate(manifest["sites"])}
    out = []
    for article in manifest["articles"]:
        base = f"http://127.0.0.1:{ports[article['site']]}"
        out.append((article["id"], article["site"], article["url"].replace("{{BASE}}", base)))
    return out


ARTICLES = _demo_articles()


def test_the_demo_corpus_articles_have_distinct_canonical_urls():
    canon = {}
    for article_id, _, url in ARTICLES:
        canon.setdefault(canonical_url(url), []).append(article_id)
    assert len(ARTICLES) >= 45
    assert {k: v for k, v in canon.items() if len(v) > 1} == {}


@st.composite
def dressed(draw, url: str) -> str:
    """The same article's URL as feeds and shares spell it."""
    params = draw(st.lists(st.tuples(st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "fbclid", "gclid"]),
                                     st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6)), max_size=3))
    query = "?" + "&".join(f"{k}={v}" for k, v in params) if params else ""
    fragment = draw(st.sampled_from(["", "#main", "#comments"]))
    if draw(st.booleans()):
        url = url.replace("http://", "HTTP://", 1)
    return url + query + fragment


@FAST
@given(st.data())
def test_tracking_and_spelling_never_fold_two_demo_articles_together(data):
    (id_a, _, url_a), (id_b, _, url_b) = data.draw(st.lists(st.sampled_from(ARTICLES), min_size=2, max_size=2,
                                                            unique_by=lambda a: a[0]))
    a, b = data.draw(dressed(url_a)), data.draw(dressed(url_b))
    assert canonical_url(a) == canonical_url(url_a)  # the same article whatever the dressing
    assert canonical_url(a) != canonical_url(b), (id_a, id_b)


# ------------------------------------------------------------------------------------- feed entries

_TITLE = st.text(alphabet=string.ascii_letters + " -'é—", min_size=1, max_size=30)


@st.composite
def feed_items(draw) -> list[tuple[str | None, str, str]]:
    """(guid or None, link, title) items with distinct articles."""
    n = draw(st.integers(1, 8))
    items = []
    for i in range(n):
        guid = draw(st.one_of(st.none(), st.just(f"urn:item:{i}"), st.just(f"http://127.0.0.1:8001/p/{i}.html")))
        items.append((guid, f"http://127.0.0.1:8001/2024/03/{i:02d}/story-{i}.html", draw(_TITLE)))
    return items


def _rss(items: list[tuple[str | None, str, str]]) -> bytes:
    body = "".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        + (f"<guid>{escape(g)}</guid>" if g else "") + "</item>" for g, link, t in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>P</title>'
            f"<link>http://127.0.0.1:8001/</link>{body}</channel></rss>").encode()


@FAST
@given(feed_items(), st.randoms(use_true_random=False))
def test_feed_entry_keys_are_unique_deterministic_and_order_independent(items, rnd):
    first = parse_feed(_rss(items), feed_url="http://127.0.0.1:8001/rss.xml")
    again = parse_feed(_rss(items), feed_url="http://127.0.0.1:8001/rss.xml")
    shuffled = items[:]
    rnd.shuffle(shuffled)
    reordered = parse_feed(_rss(shuffled), feed_url="http://127.0.0.1:8001/rss.xml")
    keys = [e.entry_key for e in first.entries]
    assert len(keys) == len(set(keys)) == len(items)
    assert keys == [e.entry_key for e in again.entries]
    assert set(keys) == {e.entry_key for e in reordered.entries}


@FAST
@given(feed_items(), st.sampled_from(["?utm_source=rss", "?utm_medium=feed&fbclid=x", "#comments"]))
def test_an_items_key_survives_tracking_parameters_on_its_link(items, tracking):
    plain = parse_feed(_rss(items), feed_url="http://127.0.0.1:8001/rss.xml")
    tracked = parse_feed(_rss([(g, link + tracking, t) for g, link, t in items]),
                         feed_url="http://127.0.0.1:8001/rss.xml")
    assert [e.entry_key for e in plain.entries] == [e.entry_key for e in tracked.entries]


# --------------------------------------------------------------------------------------------- dedup

_VOCAB = ("convoy shelling ceasefire brigade drone village bridge refinery governor hospital corridor evacuation "
          "negotiators border checkpoint airstrike militia harvest reservoir tribunal monitors artillery substation "
          "railway mayor refugees grain port blockade council envoy sanctions mortar barracks outpost frontier").split()


def _story_text(topic: int, variant: int) -> str:
    """Topic ``topic``'s article; variants share most of it (near-duplicates: wire copies, updates)."""
    rng = random.Random(topic)
    words = [rng.choice(_VOCAB) for _ in range(220)]
    if variant:
        vr = random.Random(topic * 1000 + variant)
        for _ in range(6):  # a handful of edited words: still a near-duplicate
            words[vr.randrange(len(words))] = vr.choice(_VOCAB)
    return " ".join(words).capitalize() + f". Topic {topic}."


_counter = itertools.count(1)


def _fresh(conn) -> None:
    """Each example starts from an empty store (the database fixture outlives the examples): a failure
    then replays from its example alone."""
    conn.execute("TRUNCATE entries, pages, staged_reports, reports, report_urls, stories, story_bands CASCADE")
    conn.commit()


@pytest.fixture
def feed_source(conn, site) -> int:
    sources.add_feeds(conn, [sources.FeedSpec(url=site.url("/dedup.xml"), name="Dedup")])
    conn.commit()
    return int(conn.execute("SELECT source_id FROM sources").fetchone()[0])


def _entry_report(conn, source_id: int, url: str, text: str, title: str, hour: int, canonical: str | None = None,
                  batch: int = 0) -> Report:
    """A report of a new feed entry for ``url`` (canonical: the URL's own unless one is declared),
    published ``hour`` hours in and fetched then, in the ``batch``-th month (batches fetch in order)."""
    n = next(_counter)
    sources.record_entries(conn, source_id, [FeedEntry(entry_key=f"e{n}", link=url, title=f"t{n}")])
    entry_id = conn.execute("SELECT entry_id FROM entries WHERE entry_key = %s", (f"e{n}",)).fetchone()[0]
    when = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(hours=hour)
    return Report(entry_id=entry_id, source_id=source_id, page_id=None, url=url, canonical_url=canonical_url(canonical or url),
                  title=title, authors=[], published_at=when, published_at_source="feed",
                  fetched_at=when + timedelta(days=30 * batch),
                  language="en", text=text, summary=None, word_count=len(text.split()), content_sha256=content_hash(text),
                  extraction_method="test", minhash=band_keys(text))


def _report(conn, source_id: int, topic: int, variant: int, hour: int) -> Report:
    n = next(_counter)
    url = f"http://127.0.0.1:8001/2024/05/{n}/topic-{topic}-v{variant}.html"
    text = _story_text(topic, variant) + f" Copy {n}." * (variant > 0)
    return _entry_report(conn, source_id, url, text, f"Topic {topic}", hour)


# Publication hours from a short range: ties in time, so the word-count and load-order tie-breaks count.
_BATCHES = st.lists(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
                             min_size=1, max_size=4), min_size=1, max_size=3)


@pytest.mark.parametrize("window_hours", [None, 1.5], ids=["default-window", "window-inside-the-hours"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(batches=_BATCHES)
def test_dedup_stories_never_lose_a_member_and_duplicate_of_never_points_at_a_duplicate(conn, feed_source, window_hours,
                                                                                        batches):
    _fresh(conn)
    rules = DedupSettings() if window_hours is None else DedupSettings(window_days=window_hours / 24)
    members_before: dict[int, set[int]] = {}
    for batch in batches:
        reports = [_report(conn, feed_source, topic, variant, hour) for topic, variant, hour in batch]
        conn.commit()  # each step its own transaction, as in load_batch (a fresh connection per task)
        with conn.transaction():
            store.stage_reports(conn, reports)
        store.load_staged(conn, [feed_source], rules=rules)
        conn.commit()
        members = _check_stories(conn)
        _check_joined_within_the_window(conn, timedelta(days=rules.window_days))
        for story, before in members_before.items():  # a story never loses a member
            assert before <= members.get(story, set()), story
        members_before = members
        assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0


def _check_stories(conn) -> dict[int, set[int]]:
    """The stories' invariants (tests/reports.py), and the representative is the earliest published
    member, then the longest, then the first loaded; returns each story's members."""
    assert_story_invariants(conn)
    rows = conn.execute("SELECT report_id, story_id, published_at, word_count FROM reports").fetchall()
    members: dict[int, set[int]] = {}
    for rid, story, _, _ in rows:
        members.setdefault(story, set()).add(rid)
    reps = dict(conn.execute("SELECT story_id, representative_id FROM stories").fetchall())
    far = datetime.max.replace(tzinfo=UTC)
    for story in members:
        assert reps[story] == min((r for r in rows if r[1] == story), key=lambda r: (r[2] or far, -r[3], r[0]))[0], story
    return members


def _check_joined_within_the_window(conn, window: timedelta) -> None:
    """Every member of a story but its first loaded joined through an earlier member published within
    the window of it (report ids are drawn in load order)."""
    published: dict[int, list[tuple[int, datetime]]] = {}
    for rid, story, when in conn.execute("SELECT report_id, story_id, published_at FROM reports ORDER BY report_id"):
        earlier = published.setdefault(story, [])
        assert not earlier or any(abs(when - other) <= window for _, other in earlier), (rid, story, earlier)
        earlier.append((rid, when))


# Pages seen again: a few URLs, canonicals declared or not, a few texts, so that batches revise reports,
# alias pages, move canonicals and change pages to texts other pages have.
_PAGES = st.lists(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([None, 0, 1, 2, 3]), st.integers(0, 2),
                                     st.integers(0, 2), st.integers(0, 3)),
                           min_size=1, max_size=5), min_size=1, max_size=4)


def _page_report(conn, source_id: int, page: int, declared: int | None, topic: int, variant: int, hour: int,
                 batch: int = 0) -> Report:
    page_url = "http://127.0.0.1:8001/news/page-{}.html".format
    return _entry_report(conn, source_id, page_url(page), _story_text(topic, variant), f"Page {page}", hour,
                         canonical=None if declared is None else page_url(declared), batch=batch)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(batches=_PAGES)
def test_pages_seen_again_always_load_and_the_index_follows_each_reports_text(conn, feed_source, batches):
    # Each batch loads (a failed batch would fail every later load of the source), closes every entry on
    # a report, and leaves each report's LSH keys exactly those of its current text.
    _fresh(conn)
    for number, batch in enumerate(batches):
        reports = [_page_report(conn, feed_source, *item, batch=number) for item in batch]
        before = {sha for (sha,) in conn.execute("SELECT content_sha256 FROM reports")}
        conn.commit()
        with conn.transaction():
            store.stage_reports(conn, reports)
        store.load_staged(conn, [feed_source])
        conn.commit()
        closed = conn.execute("SELECT count(*) FROM entries e JOIN reports r USING (report_id)"
                              " WHERE e.entry_id = ANY(%s) AND e.status IN ('loaded', 'duplicate')",
                              ([r.entry_id for r in reports],)).fetchone()[0]
        assert closed == len(reports)
        assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0
        keys: dict[int, list[tuple[int, int]]] = {}
        for report_id, band, key in conn.execute("SELECT report_id, band, hash FROM story_bands ORDER BY 2, 3"):
            keys.setdefault(report_id, []).append((band, key))
        for report_id, text, sha in conn.execute("SELECT report_id, text, content_sha256 FROM reports").fetchall():
            assert sha == content_hash(text)
            assert keys.get(report_id) == split_keys(band_keys(text))
        unmapped = conn.execute("SELECT count(*) FROM unnest(%s::text[]) AS u(url) LEFT JOIN report_urls USING (url)"
                                " WHERE report_urls.report_id IS NULL", ([r.url for r in reports],)).fetchone()[0]
        assert unmapped == 0
        _check_stories(conn)  # revisions keep the stories' rules too (a revised date can move a representative)
        # Nothing fetched is lost: of the pages that map to a report, the latest fetch in the batch (one
        # of them, if several were fetched at once) is a report's text (that one's, revised, or another's),
        # or was one before the batch (revised away).
        report_of = dict(conn.execute("SELECT url, report_id FROM report_urls WHERE url = ANY(%s)",
                                      ([r.url for r in reports],)).fetchall())
        texts = {sha for (sha,) in conn.execute("SELECT content_sha256 FROM reports")} | before
        fetches: dict[int, list[Report]] = {}
        for r in reports:
            fetches.setdefault(report_of[r.url], []).append(r)
        for rows in fetches.values():
            last = max(r.fetched_at for r in rows)
            assert any(r.content_sha256 in texts for r in rows if r.fetched_at == last)
