"""Feed bytes -> entries: untidy feeds handled and counted, hostile ones harmless."""

from __future__ import annotations

import tracemalloc

import pytest

from sitrep.errors import FeedError
from sitrep.feeds import parse_feed
from tests.pages import Item, rss

FEED = "https://news.example.org/rss.xml"


def _rss(items: str, *, link: str = "https://news.example.org/") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
            f"<link>{link}</link>{items}</channel></rss>").encode()


def test_a_tidy_feed_yields_its_entries():
    body = rss([Item(title=f"Story {i}", link=f"https://news.example.org/{i}", guid=f"g{i}") for i in range(3)],
               link="https://news.example.org/").encode()
    parsed = parse_feed(body, feed_url=FEED)
    assert [(e.entry_key, e.link) for e in parsed.entries] == [(f"g{i}", f"https://news.example.org/{i}") for i in range(3)]
    assert parsed.problems == {} and parsed.skipped == 0
    assert parsed.entries[0].published_at.isoformat() == "2024-03-12T08:00:00+00:00"


def test_untidy_entries_are_handled_and_counted():
    body = _rss(
        "<item><title>relative</title><link>/2024/a.html</link><guid>a</guid></item>"
        "<item><title>guid is the link</title><guid>https://news.example.org/b.html</guid></item>"
        "<item><title>no link, opaque guid</title><guid>c</guid></item>"
        "<item><title>nothing to know it by</title></item>"
        "<item><title>again a</title><link>https://news.example.org/a2.html</link><guid>a</guid></item>"
        "<item><title>javascript</title><link>javascript:alert(1)</link><guid>d</guid></item>"
        "<item><title>from the future</title><link>https://news.example.org/e</link><guid>e</guid>"
        "<pubDate>Sat, 01 Jan 2101 00:00:00 GMT</pubDate></item>"
        "<item><title>from the past</title><link>https://news.example.org/f</link><guid>f</guid>"
        "<pubDate>Mon, 01 Jan 1900 00:00:00 GMT</pubDate></item>"
    )
    parsed = parse_feed(body, feed_url=FEED)
    by_key = {e.entry_key: e for e in parsed.entries}
    # "a" names two articles with different links: no id, so each is known by its link
    assert by_key["https://news.example.org/2024/a.html"].link == "https://news.example.org/2024/a.html"
    assert by_key["https://news.example.org/a2.html"].link == "https://news.example.org/a2.html"
    assert by_key["https://news.example.org/b.html"].link == "https://news.example.org/b.html"
    assert by_key["c"].link is None and by_key["d"].link is None
    assert by_key["e"].published_at is None and by_key["f"].published_at is None
    assert list(by_key) == ["https://news.example.org/2024/a.html", "https://news.example.org/b.html", "c",
                            "https://news.example.org/a2.html", "d", "e", "f"]
    assert parsed.problems == {"relative_link": 1, "missing_link": 3, "no_key": 1, "shared_guid": 2,
                               "bad_link": 1, "absurd_date": 2}
    assert parsed.skipped == 1


def test_the_same_item_twice_is_recorded_once():
    item = "<item><title>a</title><link>https://news.example.org/a.html</link><guid>a</guid></item>"
    parsed = parse_feed(_rss(item * 2), feed_url=FEED)
    assert [e.entry_key for e in parsed.entries] == ["a"]
    assert parsed.problems == {"duplicate_guid": 1} and parsed.skipped == 1


@pytest.mark.parametrize("body", [
    # Atom: <id> before a relative <link> (the usual order), no xml:base
    '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>'
    '<link href="https://news.example.org/"/>'
    '<entry><id>tag:news.example.org,2024:1</id><title>R</title><link rel="alternate" href="/news/1.html"/>'
    "<updated>2024-03-12T08:00:00Z</updated></entry></feed>",
    # RSS: <guid> before a relative <link>
    '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://news.example.org/</link>'
    "<item><title>R</title><guid>1</guid><link>/news/1.html</link></item></channel></rss>",
    # RSS: a permalink GUID that is a path, and no <link>
    '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://news.example.org/</link>'
    '<item><title>R</title><guid isPermaLink="true">/news/1.html</guid></item></channel></rss>',
])
def test_a_relative_link_after_the_guid_is_the_entrys_link(body):
    """feedparser leaves guidislink set when a <link> after the GUID replaced it: that link was dropped
    as if it were the GUID, and the entry skipped for want of a link."""
    parsed = parse_feed(body.encode(), feed_url=FEED)
    assert [e.link for e in parsed.entries] == ["https://news.example.org/news/1.html"]
    assert "missing_link" not in parsed.problems


def test_a_guid_that_every_item_shares_is_no_id_and_the_links_are():
    """A CMS that writes one GUID (here the site's address) into every item: keyed by it, every new
    article after the first was taken for the first one and never fetched."""
    items = "".join(f"<item><title>R{i}</title><link>https://news.example.org/{i}.html</link>"
                    f"<guid>https://news.example.org/</guid></item>" for i in range(3))
    parsed = parse_feed(_rss(items), feed_url=FEED)
    assert [e.entry_key for e in parsed.entries] == [f"https://news.example.org/{i}.html" for i in range(3)]
    # the next day's feed holds one new item under the same GUID: still known by its own link
    one = parse_feed(_rss("<item><title>R9</title><link>https://news.example.org/9.html</link>"
                          "<guid>https://news.example.org/</guid></item>"), feed_url=FEED)
    assert [e.entry_key for e in one.entries] == ["https://news.example.org/9.html"]
    opaque = "".join(f"<item><title>R{i}</title><link>https://news.example.org/{i}.html</link>"
                     f'<guid isPermaLink="false">same</guid></item>' for i in range(2))
    assert [e.entry_key for e in parse_feed(_rss(opaque), feed_url=FEED).entries] == [
        "https://news.example.org/0.html", "https://news.example.org/1.html"]


@pytest.mark.parametrize(("date", "expected"), [
    ("Tue, 12 Mar 2024 08:00:00 CEST", "2024-03-12T06:00:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 MSK", "2024-03-12T05:00:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 JST", "2024-03-11T23:00:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 IRST", "2024-03-12T04:30:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 EDT", "2024-03-12T12:00:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 GMT", "2024-03-12T08:00:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 +0530", "2024-03-12T02:30:00+00:00"),
    ("Mon, 06 Sep 2021 16:45:00 +0300 MSK", "2021-09-06T13:45:00+00:00"),  # the offset read once, not twice
    ("2024-03-12T08:00:00Z", "2024-03-12T08:00:00+00:00"),
    ("Tue, 12 Mar 2024 08:00:00 IST", None),  # India, Israel or Ireland: unknown, not taken for UTC
    ("Tue, 12 Mar 2024 08:00:00 XYZ", None),
])
def test_time_zone_names_feedparser_takes_for_utc_are_converted_or_left_unknown(date, expected):
    parsed = parse_feed(rss([Item(title="R", link="https://news.example.org/1", guid="g", date=date)]).encode(),
                        feed_url=FEED)
    when = parsed.entries[0].published_at
    assert (when.isoformat() if when else None) == expected
    assert ("unknown_time_zone" in parsed.problems) == (expected is None)


def test_links_with_a_port_no_url_can_have_are_bad_links_not_crashes():
    body = _rss(
        "<item><title>port out of range</title><link>https://news.example.org:99999/a.html</link><guid>a</guid></item>"
        "<item><title>port not a number</title><link>https://news.example.org:abc/b.html</link><guid>b</guid></item>"
        "<item><title>guid as a link</title><guid>https://news.example.org:70000/c.html</guid></item>"
        "<item><title>no guid</title><link>https://news.example.org:99999/d.html</link></item>"
    )
    parsed = parse_feed(body, feed_url=FEED)
    assert {e.entry_key: e.link for e in parsed.entries} == {
        "a": None, "b": None, "https://news.example.org:70000/c.html": None}
    assert parsed.problems["bad_link"] == 4 and parsed.skipped == 1


def test_links_with_credentials_are_bad_links():
    # The fetcher refuses them; recorded, such an entry led the fetch of the same article linked plainly.
    body = _rss("<item><title>a</title><link>https://user:pw@news.example.org/a.html</link><guid>a</guid></item>"
                "<item><title>b</title><link>https://user@news.example.org/b.html</link><guid>b</guid></item>")
    parsed = parse_feed(body, feed_url=FEED)
    assert {e.entry_key: e.link for e in parsed.entries} == {"a": None, "b": None}
    assert parsed.problems["bad_link"] == 2


def test_a_very_long_guid_is_stored_short_and_still_one_key_per_entry():
    # 2,000 CJK characters are 6,000 bytes, over the 2,704 bytes a row of the entries key index takes.
    long_a, long_b = "\u6218" * 2500 + "a", "\u6218" * 2500 + "b"
    body = _rss("".join(f"<item><title>t</title><link>https://news.example.org/{i}</link><guid>{g}</guid></item>"
                        for i, g in enumerate([long_a, long_b, "x" * 2500])))
    keys = [e.entry_key for e in parse_feed(body, feed_url=FEED).entries]
    assert all(len(k.encode("utf-8")) <= 2000 for k in keys)
    assert len(set(keys)) == 3 and keys[2] == "x" * 2000  # an ASCII key is cut as it always was


def test_without_a_guid_an_entry_is_known_by_its_canonical_link():
    body = _rss("<item><title>x</title><link>https://www.news.example.org/a.html?utm_source=rss#top</link></item>")
    [entry] = parse_feed(body, feed_url=FEED).entries
    assert entry.entry_key == "https://news.example.org/a.html"
    assert entry.link == "https://www.news.example.org/a.html?utm_source=rss#top"  # fetched as announced


def test_html_served_as_a_feed_is_an_error_that_says_so():
    body = b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Welcome</p></body></html>"
    with pytest.raises(FeedError, match="not RSS or Atom"):
        parse_feed(body, feed_url=FEED, content_type="text/html; charset=utf-8")


def test_an_empty_body_is_an_error_and_an_empty_feed_is_not():
    with pytest.raises(FeedError, match="empty"):
        parse_feed(b"  \n", feed_url=FEED)
    parsed = parse_feed(_rss(""), feed_url=FEED)
    assert parsed.entries == [] and parsed.bozo is None


def test_a_feed_with_10000_entries():
    items = "".join(f"<item><title>Story {i}</title><link>https://news.example.org/{i}</link><guid>g{i}</guid></item>"
                    for i in range(10_000))
    parsed = parse_feed(_rss(items), feed_url=FEED)
    assert len(parsed.entries) == 10_000 and len({e.entry_key for e in parsed.entries}) == 10_000


def test_a_windows_1251_feed_is_decoded_from_its_xml_declaration():
    body = ('<?xml version="1.0" encoding="windows-1251"?><rss version="2.0"><channel><title>Новини</title>'
            "<item><title>Обстріл Харкова</title><link>https://news.example.org/1</link></item>"
            "</channel></rss>").encode("cp1251")
    [entry] = parse_feed(body, feed_url=FEED, content_type="application/rss+xml").entries
    assert entry.title == "Обстріл Харкова"


def test_feedparser_is_never_handed_a_url_or_a_file_name(tmp_path):
    secret = tmp_path / "feed.xml"
    secret.write_bytes(_rss("<item><title>local</title><guid>x</guid></item>"))
    with pytest.raises(TypeError):
        parse_feed(str(secret), feed_url=FEED)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_feed("http://127.0.0.1/feed.xml", feed_url=FEED)  # type: ignore[arg-type]


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-MARKER-4711")
    body = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">'
            '<!ENTITY remote SYSTEM "http://127.0.0.1:9/x">]><rss version="2.0"><channel><title>t</title>'
            "<item><title>&xxe;</title><link>https://news.example.org/1</link><description>&xxe;&remote;</description>"
            "</item></channel></rss>").encode()
    parsed = parse_feed(body, feed_url=FEED)
    for entry in parsed.entries:
        assert "SECRET-MARKER" not in f"{entry.title} {entry.summary} {entry.content}"


def test_an_entity_expansion_bomb_is_not_expanded():
    lol = '<!ENTITY a "' + "lol" * 30 + '">' + "".join(
        f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(9))  # 10^9 x 90 bytes
    body = (f'<?xml version="1.0"?><!DOCTYPE rss [{lol}]><rss version="2.0"><channel><title>t</title>'
            "<item><title>&j;</title><link>https://news.example.org/1</link></item></channel></rss>").encode()
    tracemalloc.start()
    try:
        parsed = parse_feed(body, feed_url=FEED)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024
    assert all(len(e.title or "") < 1000 for e in parsed.entries)
