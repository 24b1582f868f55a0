"""Extraction: page bytes -> article text and metadata, the fallback chain, and the demo corpus as truth.

The pages here are written for the tests (tests/pages.py and below) or come from the demo corpus
(seeds/demo, with seeds/demo/MANIFEST.yaml as the truth for titles, dates, languages and text).
"""

from __future__ import annotations

import gzip
from dataclasses import replace
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest
import trafilatura
import yaml
from lxml import etree

from sitrep import extract
from sitrep.errors import ExtractionError
from sitrep.extract import MIN_USABLE_WORDS, extract_page, html_to_text, parse_page, split_authors, word_count
from sitrep.pipeline import build_report
from sitrep.records import PageJob, Rejected, Report
from sitrep.settings import PROJECT_ROOT, ExtractSettings
from tests.pages import article_html, paragraphs

DEMO = PROJECT_ROOT / "seeds" / "demo"
SAMPLE = PROJECT_ROOT / "seeds" / "samples" / "000_b27345ed7055cdc8.txt"
URL = "https://news.example/2024/06/03/strike.html"
FETCHED = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)

FULL_PAGE = f"""<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">
<title>Drone strike damages Odesa port | Black Sea Courier</title>
<meta property="og:site_name" content="Black Sea Courier">
<meta name="author" content="Olena Kovalenko; Taras Hrytsenko">
<meta property="article:published_time" content="2024-06-03T09:40:00+03:00">
<meta name="description" content="Drones hit warehouses in the port of Odesa overnight.">
<meta property="article:section" content="Ukraine">
<meta property="article:tag" content="drones"><meta property="article:tag" content="Odesa">
<link rel="canonical" href="https://news.example/odesa/drone-strike-port">
</head><body><nav><a href="/">Home</a> <a href="/world">World</a></nav>
<article><h1>Drone strike damages Odesa port</h1>
{''.join(f'<p>{escape(p)}</p>' for p in paragraphs('Odesa port', 5))}
</article><aside><h3>Most read</h3><ul><li><a href="/x">Another story about something else</a></li></ul></aside>
<footer>Copyright 2024 Black Sea Courier</footer></body></html>"""


def _job(body: bytes | str, url: str = URL, **feed: object) -> PageJob:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return PageJob(entry_id=1, source_id=1, url=url, final_url=url, body=data, fetched_at=FETCHED, **feed)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- parsing

_UK = "<p>Українські сили відбили атаку біля Часового Яру — «тиша» тривала недовго… 🚀 東京</p>"
_PAGES = {
    "UTF-8 with non-ASCII text": FULL_PAGE.replace("<nav>", _UK + "<nav>").encode("utf-8"),
    "a meta charset that lies": FULL_PAGE.replace('charset="utf-8"', 'charset="iso-8859-1"').replace("<nav>", _UK + "<nav>").encode(),
    "an XML declaration with an encoding": ('<?xml version="1.0" encoding="utf-8"?>\n' + FULL_PAGE.replace("<!DOCTYPE html>", "")
                                            .replace("<nav>", _UK + "<nav>")).encode(),
    "comments, entities and a script": FULL_PAGE.replace("<nav>", "<!-- a comment --><script>var s = 'é <p>';</script>"
                                                         "<p>caf&eacute; &amp; &#8212; &nbsp;</p><nav>").encode(),
    "an XHTML doctype (load_html removes it)": FULL_PAGE.replace(
        "<!DOCTYPE html>", '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">').encode(),
    "a self-closing html tag": FULL_PAGE.replace('<html lang="en-GB">', '<html lang="en-GB"/>\n').encode(),
    "control characters": FULL_PAGE.replace("Odesa port", "Odesa\x0b port\x1f").encode(),
    "a U+FFFF": FULL_PAGE.replace("<nav>", "<p>x\uffff y</p><nav>").encode(),
    "a byte-order mark": b"\xef\xbb\xbf" + FULL_PAGE.encode(),
    "leading whitespace": b"\n\n   " + FULL_PAGE.encode(),
    "Windows-1251": FULL_PAGE.replace('charset="utf-8"', 'charset="windows-1251"').replace("<nav>", "<p>Київ під обстрілом</p><nav>")
                   .encode("cp1251"),
    "gzip": gzip.compress(FULL_PAGE.encode()),
    "no html tag or doctype": b"<div><p>just a fragment</p></div>",
    "plain text": b"not markup at all",
}


@pytest.mark.parametrize("body", _PAGES.values(), ids=_PAGES.keys())
def test_a_page_parses_to_the_tree_trafilatura_load_html_gives(body):
    ours, theirs = parse_page(body), trafilatura.load_html(body)
    assert (ours is None) == (theirs is None)
    if ours is not None:
        assert etree.tostring(ours, encoding="unicode") == etree.tostring(theirs, encoding="unicode")


# ------------------------------------------------------------------------------------------ metadata


def test_every_metadata_field_is_filled_where_the_page_has_it():
    got = extract_page(FULL_PAGE.encode(), URL)
    assert got.method == "trafilatura"
    assert got.text.startswith("Odesa port: paragraph 1 reports")
    assert "Most read" not in got.text and "Copyright" not in got.text
    assert got.title == "Drone strike damages Odesa port"
    assert got.authors == ["Olena Kovalenko", "Taras Hrytsenko"]
    assert got.date == "2024-06-03T09:40:00+03:00"  # the declared time, not only htmldate's day
    assert got.sitename == "Black Sea Courier"
    assert got.language == "en"  # declared en-GB, as a hint for normalization
    assert got.canonical_url == "https://news.example/odesa/drone-strike-port"
    assert got.description == "Drones hit warehouses in the port of Odesa overnight."
    assert {"Ukraine", "drones", "Odesa"} <= set(got.tags)


def test_the_report_carries_the_metadata_normalized():
    report = build_report(_job(FULL_PAGE))
    assert isinstance(report, Report)
    assert report.title == "Drone strike damages Odesa port"
    assert report.authors == ["Olena Kovalenko", "Taras Hrytsenko"]
    assert report.published_at == datetime(2024, 6, 3, 6, 40, tzinfo=UTC)
    assert report.published_at_source == "article"
    assert report.language == "en"
    assert report.canonical_url == "https://news.example/odesa/drone-strike-port"
    assert report.sitename == "Black Sea Courier"
    assert report.description == "Drones hit warehouses in the port of Odesa overnight."
    assert report.summary and report.summary.startswith("Odesa port: paragraph 1")
    assert report.word_count == len(report.text.split()) and report.extraction_method == "trafilatura"


def test_tags_from_rel_tag_links_and_the_time_from_the_articles_markup_when_the_head_says_nothing():
    body = "".join(f"<p>{p}</p>" for p in paragraphs("Pokrovsk", 4))
    page = ("<html><head><title>Fighting near Pokrovsk</title></head><body><nav><a href='/'>Home</a>"
            "<a href='/world' rel='nofollow'>World</a></nav><article><h1>Fighting near Pokrovsk</h1>"
            "<time datetime='2024-06-12T07:15:00+03:00'>12 June, 07:15</time>"
            f"{body}<p>Filed under <a href='/tag/donetsk' rel='tag'>Donetsk  region</a>, <a rel='tag'>no link</a>"
            "<a href='/c/war' rel='category tag'>War</a></p></article></body></html>")
    got = extract_page(page.encode(), URL)
    assert got.tags == ["Donetsk region", "War"]
    assert got.date == "2024-06-12T07:15:00+03:00"  # with its time, where htmldate would give the day


def test_metadata_from_json_ld_when_the_page_has_no_meta_tags():
    body = "".join(f"<p>{p}</p>" for p in paragraphs("Kherson", 4))
    page = ('<html><head><title>Shelling in Kherson</title><script type="application/ld+json">'
            '{"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Shelling in Kherson",'
            ' "datePublished": "2024-06-07T08:30:00Z", "author": {"@type": "Person", "name": "Iryna Kovalchuk"},'
            ' "publisher": {"@type": "Organization", "name": "Dnipro Daily"}}</script></head>'
            f"<body><article><h1>Shelling in Kherson</h1>{body}</article></body></html>")
    got = extract_page(page.encode(), "https://dnipro.example/news/shelling")
    assert got.title == "Shelling in Kherson"
    assert got.authors == ["Iryna Kovalchuk"]
    assert got.date == "2024-06-07T08:30:00Z"
    assert got.sitename == "Dnipro Daily"


_LD = ('<script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle",'
       ' "datePublished": "2024-06-03T09:40:00+03:00"}</script>')
_TICKER = ("<aside class='ticker'><article><a href='/old'>Earlier: talks collapse</a>"
           "<time datetime='2022-02-24T05:00:00+02:00'>24 Feb 2022</time></article></aside>")
_DATED = "<time datetime='2024-06-03T09:40:00+03:00'>3 June</time>"


@pytest.mark.parametrize(("head", "chrome", "article_head"), [
    # A ticker of older stories before the article, each an <article> with its <time>: the first of
    # them was taken (labelled the article's), before the article's own JSON-LD and <time>.
    (_LD, _TICKER, f"<h1>Shelling hits Kharkiv</h1>{_DATED}"),
    ("", _TICKER, f"<h1>Shelling hits Kharkiv</h1>{_DATED}"),
    # The article's own <header> is not the page's chrome.
    ("", "<header><nav>Home</nav></header>", f"<header><h1>Shelling hits Kharkiv</h1>{_DATED}</header>"),
], ids=["ticker-json-ld", "ticker", "article-header"])
def test_the_articles_date_is_its_own_not_the_page_chromes(head, chrome, article_head):
    body = "".join(f"<p>{p}</p>" for p in paragraphs("Kharkiv", 5))
    page = (f"<html><head><title>Shelling hits Kharkiv</title>{head}</head><body>{chrome}"
            f"<main><article>{article_head}{body}</article></main></body></html>")
    assert extract_page(page.encode(), URL).date == "2024-06-03T09:40:00+03:00"


def test_the_pages_own_json_ld_date_comes_before_the_lists_after_it():
    # An @graph of [the article, a list of related articles]: the lists were walked last item first, so
    # the oldest related article's date was the page's.
    graph = ('<script type="application/ld+json">{"@context": "https://schema.org", "@graph": ['
             '{"@type": "NewsArticle", "datePublished": "2024-06-03T09:40:00+03:00"},'
             '{"@type": "ItemList", "itemListElement": [{"@type": "NewsArticle", "datePublished": "2024-05-01T08:00:00Z"}]}'
             ']}</script>')
    body = "".join(f"<p>{p}</p>" for p in paragraphs("Kharkiv", 5))
    page = f"<html><head><title>Shelling hits Kharkiv</title>{graph}</head><body><article>{body}</article></body></html>"
    assert extract_page(page.encode(), URL).date == "2024-06-03T09:40:00+03:00"


def test_reader_comments_are_stored_only_when_asked_for():
    body = "".join(f"<p>{p}</p>" for p in paragraphs("Kharkiv", 5))
    page = ("<html><head><title>Shelling hits Kharkiv</title></head><body><article><h1>Shelling hits Kharkiv</h1>"
            f"{body}</article><section id='comments' class='comments'><h2>Comments</h2>"
            "<div class='comment'><p>Reader Olena: the sirens went on for three hours in Saltivka last night.</p></div>"
            "</section></body></html>").encode()
    comment = "sirens went on for three hours in Saltivka"
    assert comment not in (extract_page(page, URL).text or "")
    with_comments = extract_page(page, URL, options=ExtractSettings(include_comments=True)).text or ""
    assert comment in with_comments and with_comments.index(comment) > with_comments.index("Kharkiv")


def test_bytes_in_a_legacy_encoding_are_decoded_from_the_page_declaration():
    text = ("Російські війська вночі атакували Одесу ударними дронами, пошкоджено портову інфраструктуру "
            "та склади, повідомили в обласній військовій адміністрації. ") * 4
    page = (f'<html lang="uk"><head><meta charset="windows-1251"><title>Атака на Одесу</title></head>'
            f"<body><article><h1>Атака на Одесу</h1><p>{text}</p><p>{text}</p></article></body></html>")
    got = extract_page(page.encode("cp1251"), URL)
    assert "Російські війська вночі атакували Одесу" in got.text
    report = build_report(_job(page.encode("cp1251")))
    assert isinstance(report, Report) and report.language == "uk" and report.title == "Атака на Одесу"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("Olena Kovalenko", ["Olena Kovalenko"]),
        ("Olena Kovalenko; Taras Hrytsenko", ["Olena Kovalenko", "Taras Hrytsenko"]),
        ("By Olena Kovalenko and Taras Hrytsenko", ["Olena Kovalenko", "Taras Hrytsenko"]),
        ("Olena Kovalenko, Taras Hrytsenko & Amina Yusuf", ["Olena Kovalenko", "Taras Hrytsenko", "Amina Yusuf"]),
        ("Олена Марченко і Тарас Гриценко", ["Олена Марченко", "Тарас Гриценко"]),
        ("Olena Kovalenko; olena@news.example; Olena Kovalenko", ["Olena Kovalenko"]),
        (None, []),
        ("", []),
        # Agencies, roles, places and the outlet after a "|" were names.
        ("Staff and agencies", ["Staff and agencies"]),  # a credit and no person: the credit, whole
        ("Reuters", ["Reuters"]),
        ("By Jane Doe | BBC News, Kyiv", ["Jane Doe"]),
        ("Jonathan Beale, Defence correspondent, in Kharkiv", ["Jonathan Beale"]),
        ("Olena Kovalenko, Reuters", ["Olena Kovalenko"]),
        ("Amina Yusuf; The Associated Press", ["Amina Yusuf"]),
        ("محمد أحمد; علي حسن", ["محمد أحمد", "علي حسن"]),  # a script without capitals
    ],
)
def test_authors_are_a_list_of_names(raw, names):
    assert split_authors(raw) == names


def test_feed_html_becomes_text_one_block_per_line():
    assert html_to_text("<p>One <b>bold</b> claim.</p><ul><li>Two</li></ul><script>x()</script>") == "One bold claim.\nTwo"
    assert html_to_text("plain words") == "plain words"


def test_feed_html_keeps_each_block_once_and_the_text_between_blocks():
    # WordPress wraps quotes and list items in paragraphs: each block was taken twice (the quote and its
    # paragraph); text in <br> lines beside a block (a photo credit) was dropped altogether.
    assert html_to_text("<p>Missiles struck Kharkiv.</p><blockquote><p>We heard three explosions.</p></blockquote>"
                        "<ul><li><p>Two were killed.</p></li></ul>") == \
        "Missiles struck Kharkiv.\nWe heard three explosions.\nTwo were killed."
    assert html_to_text("Drones hit the port overnight.<br>Two ships burned.<br/>The harbour closed."
                        "<p>Photo: Reuters</p>") == \
        "Drones hit the port overnight.\nTwo ships burned.\nThe harbour closed.\nPhoto: Reuters"
    assert html_to_text("<div>Shelling <!-- ad --> resumed <em>at dawn</em>.</div>") == "Shelling resumed at dawn."


# ---------------------------------------------------------------------------------------- fallbacks

SHORT_PAGE = "<html><body><article><h1>Video</h1><p>Watch the footage from Kharkiv this morning.</p></article></body></html>"
EMPTY_PAGE = "<html><body><nav><a href='/'>Home</a></nav></body></html>"
FEED_CONTENT = "".join(f"<p>{p}</p>" for p in paragraphs("Kharkiv", 2))
FEED_SUMMARY = " ".join(paragraphs("Sumy", 1))


def _half_in_divs_page() -> str:
    """Half the paragraphs in <p>, the rest in bare <div>s: the precision mode keeps only the first half.

    (The page this test had before, a sidebar of teasers beside the text, showed "more words" in recall
    mode that were the teasers: they are dropped before extraction now.)
    """
    paras = paragraphs("Huliaipole", 6)
    body = "".join(f"<p>{p}</p>" for p in paras[:3]) + "".join(f"<div>{p}</div>" for p in paras[3:])
    return f"<html><body><h1>Road to Huliaipole</h1><article>{body}</article></body></html>"


def test_lists_of_teasers_below_or_beside_the_article_are_not_its_text():
    # Steppe Herald's "More from" (a headline link and a line of summary, in plain divs): every one of its
    # reports ended with three other stories' summaries, their places and actors tagged as its own.
    paras = paragraphs("Sevastopol", 5)
    more = "".join(f"<div class='x-item'><a href='/s/{i}'>El Fasher's last major hospital shuts after raid {i}</a>"
                   f"<p>Médecins Sans Frontières says the hospital in El Fasher stopped admitting patients.</p></div>"
                   for i in range(3))
    popular = "".join(f"<li><a href='/p/{i}'>Missile hits grain ship at Odesa anchorage {i}</a>"
                      f" <span>A Russian missile struck a bulk carrier off Odesa, injuring three crew.</span></li>"
                      for i in range(4))
    keys = "".join(f"<li><a href='/k/{i}'>Map</a> of the front line near the coast, updated daily</li>" for i in range(3))
    page = (f"<html><body><h1>Sea drones strike ship</h1><article>{''.join(f'<p>{p}</p>' for p in paras)}"
            f"<ul>{keys}</ul></article><div class='col'><h3>Popular now</h3><ul>{popular}</ul></div>"
            f"<div class='x-more'><h3>More from the Herald</h3>{more}</div></body></html>")
    got = extract_page(page.encode(), URL)
    assert "El Fasher" not in got.text and "grain ship" not in got.text
    assert got.text.split("\n")[-1].startswith("Sevastopol: paragraph 5")
    tree = extract.parse_page(page.encode())
    extract._drop_teaser_lists(tree, URL)
    assert "Map of the front line" in tree.text_content()  # a short link that a line goes on from: no teaser
    assert "Popular now" not in tree.text_content() and "More from the Herald" not in tree.text_content()


_BRIEF = [("Israeli strikes on Rafah kill at least 20", "as ceasefire talks in Cairo stall over the sequencing of"
           " hostage releases, health officials in Gaza said on Sunday evening."),
          ("Sudan's RSF tightens siege of El Fasher", "cutting the last road into the city; aid groups warn that famine"
           " conditions are spreading through the displacement camps nearby."),
          ("Russian forces advance near Pokrovsk", "taking two villages in a week, according to the Ukrainian general"
           " staff, which reported more than 150 clashes along the front."),
          ("Myanmar junta bombs a village school", "in Sagaing, killing eleven children and a teacher, according to the"
           " local resistance administration and witnesses.")]


@pytest.mark.parametrize("layout", ["what we know", "briefing", "briefing in a body div", "live blog"])
def test_lists_that_lead_with_links_inside_the_article_are_its_text(layout):
    # The first teaser rule dropped them all: the bullets, or the whole article ("no article text").
    lede = " ".join(paragraphs("Odesa", 1))
    if layout == "what we know":
        items = "".join(f"<li><a href='/2025/05/{i}'>{a}</a> {b}</li>" for i, (a, b) in enumerate(_BRIEF[:3]))
        body = f"<p>{lede}</p><h2>What we know</h2><ul>{items}</ul><p>{lede}</p>"
    elif layout.startswith("briefing"):
        body = "".join(f"<p><a href='/s/{i}'>{a}</a> {b}</p>" for i, (a, b) in enumerate(_BRIEF))
        body = f"<div class='article-body'>{body}</div>" if layout.endswith("div") else body
    else:
        body = "".join(f"<div class='post' id='p{i}'><h3><a href='?post={i}#p{i}'>{a}</a></h3><p>{b} {lede}</p></div>"
                       for i, (a, b) in enumerate(_BRIEF[:3]))
    page = f"<html><body><h1>Headline</h1><article>{body}</article></body></html>".encode()
    got = extract_page(page, URL, feed_summary="Today's briefing: Rafah, El Fasher, Pokrovsk, Sagaing and more.")
    assert got.method.startswith("trafilatura") and "famine" in got.text and "Cairo" in got.text, got.text


def test_a_page_that_is_nothing_but_a_list_of_linked_summaries_keeps_them():
    # No <article>, no paragraphs: the rule sees a list of teasers; with it gone too little is left, so
    # the page is read whole.
    items = "".join(f"<div class='brief'><a href='/s/{i}'>{a}</a> {b}</div>" for i, (a, b) in enumerate(_BRIEF * 2))
    page = f"<html><body><h1>Morning briefing</h1><div class='main'>{items}</div></body></html>".encode()
    assert extract._drop_teaser_lists(extract.parse_page(page), URL) > 100  # the rule does take it for teasers
    got = extract_page(page, URL)
    assert "famine" in got.text and "Cairo" in got.text, got.text


def test_a_short_page_falls_back_to_the_feed_content():
    got = extract_page(SHORT_PAGE.encode(), URL, feed_content=FEED_CONTENT, feed_summary=FEED_SUMMARY)
    assert got.method == "feed-content"
    assert got.text.startswith("Kharkiv: paragraph 1") and "\n" in got.text


@pytest.mark.parametrize("body", [b"Please enable JavaScript and cookies to continue.", b"<!-- nothing -->"])
def test_a_page_that_is_not_html_falls_back_to_the_feed_content(body):
    # A bot check or a comment-only stub parses to no tree: the fallback raised TypeError (an Extracted
    # without its method), and the article, whole in the feed, was lost.
    got = extract_page(body, URL, feed_content=FEED_CONTENT, feed_summary=FEED_SUMMARY)
    assert got.method == "feed-content" and got.text.startswith("Kharkiv: paragraph 1")


def test_a_page_text_under_60_percent_of_the_feeds_full_text_is_not_enough():
    # content:encoded says how long the article is: a page text under 60% of it missed part of it, even
    # when it is long enough by itself (README, SITREP_EXTRACT_*): the next configurations are tried.
    full = "".join(f"<p>{p}</p>" for p in paragraphs("Huliaipole", 6))
    words = len(html_to_text(full).split())
    assert extract._enough_words(ExtractSettings(), full) == int(0.6 * words) > ExtractSettings().min_words
    assert extract._enough_words(ExtractSettings(), None) == ExtractSettings().min_words
    assert extract._enough_words(ExtractSettings(), "<p>A short teaser.</p>") == ExtractSettings().min_words


def test_then_to_the_feed_summary():
    got = extract_page(EMPTY_PAGE.encode(), URL, feed_summary=FEED_SUMMARY)
    assert got.method == "feed-summary" and got.text == FEED_SUMMARY


def test_a_second_trafilatura_configuration_when_the_first_finds_too_little():
    page = _half_in_divs_page().encode()
    strict = ExtractSettings(favor_recall=False, favor_precision=True, min_words=1)
    first = extract_page(page, URL, options=strict)
    assert first.method == "trafilatura"
    words = len(first.text.split())
    got = extract_page(page, URL, options=replace(strict, min_words=words + 1))
    assert got.method == "trafilatura-recall"
    assert len(got.text.split()) == 2 * words and "Huliaipole: paragraph 6" in got.text


def test_a_short_but_real_text_is_kept_when_nothing_better_exists():
    brief = " ".join(["Ukraine's air force said it shot down 24 of 29 drones launched overnight."] * 2)
    got = extract_page(f"<html><body><article><p>{brief}</p></article></body></html>".encode(), URL)
    assert got.method == "trafilatura" and MIN_USABLE_WORDS <= len(got.text.split()) < 40


@pytest.mark.parametrize(
    ("body", "feed", "reason"),
    [
        (b"", {}, "is empty"),
        (b"   \n ", {}, "is empty"),
        (EMPTY_PAGE.encode(), {}, "1 words after trafilatura (need 15)"),  # the nav's "Home"
        (SHORT_PAGE.encode(), {}, "7 words after trafilatura"),
        (EMPTY_PAGE.encode(), {"feed_summary": "Too short to use."}, "after trafilatura, feed summary"),
        (b"\x00\x01\x02 binary junk", {}, "no article text"),
    ],
)
def test_a_page_with_nothing_usable_is_a_failed_extraction_with_its_reason(body, feed, reason):
    with pytest.raises(ExtractionError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        extract_page(body, URL, **feed)
    rejected = build_report(_job(body, **feed))
    assert isinstance(rejected, Rejected) and reason in rejected.reason and URL in rejected.reason


def test_options_reach_the_extraction():
    page = article_html("Comments test", paragraphs("Mykolaiv", 4))  # has a reader comment section
    assert "Reader one" not in (extract_page(page.encode(), URL).text or "")  # off: a report is the article
    with_comments = extract_page(page.encode(), URL, options=ExtractSettings(include_comments=True))
    assert "Reader one" in with_comments.text  # asked for: after it
    no_tables = "<table><tr><td>Region</td><td>Killed</td></tr><tr><td>Kharkiv</td><td>14</td></tr></table>"
    table_page = f"<html><body><article>{''.join(f'<p>{p}</p>' for p in paragraphs('Sumy', 3))}{no_tables}</article></body></html>"
    assert "Kharkiv" in extract_page(table_page.encode(), URL, options=ExtractSettings(include_tables=True)).text
    assert "Kharkiv" not in extract_page(table_page.encode(), URL, options=ExtractSettings(include_tables=False)).text


def test_lines_pointing_at_other_articles_and_newsletter_boxes_are_not_article_text():
    # A "Read also" line inside the article (Kyiv Independent, Ukrinform, Ukrainska Pravda do it) gave the
    # report that article's places (Chasiv Yar, Toretsk) and broke near-duplicate grouping with its copies.
    body = paragraphs("Kharkiv", 2) + ["Read also: Russian forces advance near Chasiv Yar and Toretsk",
                                       "Читайте також: Обстріл Херсона вночі", "Sign up here."] + paragraphs("Izium", 2)
    text = extract_page(article_html("Strike on Kharkiv grid", body).encode(), URL).text or ""
    assert "Chasiv Yar" not in text and "Херсона" not in text and "Sign up here" not in text
    assert "Kharkiv" in text and "Izium" in text
    assert "Read also the report" in (extract._tidy("Read also the report, which the ministry published.") or "")


# ------------------------------------------------------------------------------------- demo corpus


def _demo_pages() -> list[tuple[dict, bytes, str]]:
    manifest = yaml.safe_load((DEMO / "MANIFEST.yaml").read_text(encoding="utf-8"))
    bases = {site["id"]: f"http://127.0.0.1:{8100 + i}" for i, site in enumerate(manifest["sites"])}
    out = []
    for article in manifest["articles"]:
        raw = (DEMO / "sites" / article["site"] / article["path"].lstrip("/")).read_text(encoding="utf-8")
        for site, base in bases.items():
            raw = raw.replace(f"{{{{BASE:{site}}}}}", base)
        base = bases[article["site"]]
        out.append((article, raw.replace("{{BASE}}", base).encode("utf-8"), article["url"].replace("{{BASE}}", base)))
    return out


@pytest.mark.parametrize(("article", "body", "url"), _demo_pages(), ids=lambda v: v["id"] if isinstance(v, dict) else "")
def test_the_demo_corpus_extracts_with_the_manifests_titles_dates_languages_and_text(article, body, url):
    report = build_report(PageJob(entry_id=1, source_id=1, url=url, final_url=url, body=body, fetched_at=FETCHED))
    assert isinstance(report, Report), report
    assert report.title == article["title"]
    assert report.language == article["language"]
    published_at = datetime.fromisoformat(article["published_at"]).astimezone(UTC)
    if "meta" in article["published_where"]:
        assert (report.published_at, report.published_at_source) == (published_at, "article")
    elif "url" in article["published_where"]:  # no date on the page and no feed here: the URL's day
        assert report.published_at == datetime.fromisoformat(article["published"]).replace(tzinfo=UTC)
        assert report.published_at_source == "url"
    else:
        assert report.published_at_source == "fetched"
    if "meta" not in article["published_where"]:  # with the feed's timestamp, that one wins
        with_feed = build_report(PageJob(entry_id=1, source_id=1, url=url, final_url=url, body=body,
                                         fetched_at=FETCHED, feed_published_at=published_at))
        assert isinstance(with_feed, Report)
        assert (with_feed.published_at, with_feed.published_at_source) == (published_at, "feed")
    assert report.text.startswith(article["first_words"])
    assert report.text.split("\n")[-1].startswith(article["last_paragraph_start"])  # nothing after it: no teasers
    assert report.authors and report.extraction_method == "trafilatura"
    assert 0.95 * article["word_count"] <= report.word_count <= 1.05 * article["word_count"]


def test_the_seed_sample_loads_with_its_date_title_and_language():
    from sitrep.pipeline import parse_seed_file

    day, text = parse_seed_file(SAMPLE)
    job = PageJob(entry_id=1, source_id=1, url=SAMPLE.as_uri(), final_url=SAMPLE.as_uri(), body=b"",
                  fetched_at=FETCHED, plain_text=text, plain_date=datetime(day.year, day.month, day.day, tzinfo=UTC))
    report = build_report(job)
    assert isinstance(report, Report)
    assert report.published_at == datetime(2023, 3, 21, tzinfo=UTC) and report.published_at_source == "article"
    assert report.title and report.title.startswith("Ukrainian forces have launched a counter-attack south-west of Bakhmut")
    assert report.language == "en" and report.extraction_method == "file"
    assert "\x00" not in report.text and report.text == report.text.strip()


def test_the_seed_sample_loads_into_the_database(settings, conn):
    from sitrep.pipeline import ingest_files

    counts = ingest_files(settings, [Path(SAMPLE)]).counts
    assert counts["inserted"] == 1
    row = conn.execute("SELECT title, published_at, published_at_source, language, extraction_method FROM reports_v1").fetchone()
    assert row is not None
    title, published_at, source, language, method = row
    assert title.startswith("Ukrainian forces have launched a counter-attack")
    assert published_at == datetime(2023, 3, 21, tzinfo=UTC) and source == "article"
    assert language == "en" and method == "file"


_ZH = "缅甸军方周二对实皆省的一个村庄发动空袭，造成至少二十人死亡，数十人受伤。当地救援人员表示，许多房屋被摧毁，居民逃往附近的森林。"


def test_a_chinese_article_counts_its_characters_as_words_and_is_kept():
    # Counted by spaces, eight paragraphs of Chinese were "8 words", under the minimum: never loaded.
    paragraphs = "".join(f"<p>{_ZH}（{i}）</p>" for i in range(8))
    page = (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>空袭</title></head>'
            f"<body><article><h1>空袭</h1>{paragraphs}</article></body></html>")
    got = extract_page(page.encode(), "https://news.example.cn/a.html")
    assert _ZH in got.text
    assert word_count(got.text) > 400
    assert word_count("東京 Tokyo 2024年") == 5 and word_count("Київ сьогодні") == 2 and word_count("") == 0
