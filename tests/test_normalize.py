"""Normalization: titles without site names, clean Unicode text, language, UTC dates with their source,
summaries, and the report built from what extraction found and what the feed said.

(canonical_url has its own tests with the dedup layer, in tests/test_dedup.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sitrep.normalize import (
    clean_text,
    clean_title,
    content_hash,
    date_from_url,
    detect_language,
    resolve_published,
    summarize,
    to_report,
)
from sitrep.records import Extracted, PageJob

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
URL = "https://kyivindependent.example/news/strike"


@pytest.mark.parametrize(
    ("title", "sitename", "url", "clean"),
    [
        ("Russia strikes Kharkiv overnight | Kyiv Independent", "Kyiv Independent", None, "Russia strikes Kharkiv overnight"),
        ("Russia strikes Kharkiv overnight | Kyiv Independent", None, None, "Russia strikes Kharkiv overnight"),
        ("Russia strikes Kharkiv overnight - The Kyiv Independent", "The Kyiv Independent", None,
         "Russia strikes Kharkiv overnight"),
        ("Russia strikes Kharkiv overnight — Reuters", None, None, "Russia strikes Kharkiv overnight"),
        ("Russia strikes Kharkiv overnight | Ukraine | Kyiv Independent", "Kyiv Independent", None,
         "Russia strikes Kharkiv overnight"),
        ("Kyiv Independent | Russia strikes Kharkiv overnight", "Kyiv Independent", None, "Russia strikes Kharkiv overnight"),
        ("Russia strikes Kharkiv overnight - kyivindependent.example", None, URL, "Russia strikes Kharkiv overnight"),
        ("Russia strikes Kharkiv overnight :: KYIVINDEPENDENT", None, URL, "Russia strikes Kharkiv overnight"),
        ("  Russia   strikes\nKharkiv overnight  ", None, None, "Russia strikes Kharkiv overnight"),
    ],
)
def test_titles_lose_the_site_name(title, sitename, url, clean):
    assert clean_title(title, sitename, url) == clean


@pytest.mark.parametrize(
    "title",
    [
        "Kharkiv - what we know about the overnight strike",  # a dash inside a real headline
        "Zelensky: we will not give up Donbas",
        "Ukraine war latest - Russia says it took village near Pokrovsk",
        "Strike on Odesa port",
        # A title-case headline's last clause looked like a site's name (three capitalised words or fewer).
        "Russian Missile Hits Kharkiv Apartment Block – 7 Killed",
        "Israel Strikes Gaza School - Dozens Dead",
    ],
)
def test_real_headlines_are_left_alone(title):
    assert clean_title(title, "Kyiv Independent", URL) == title


@pytest.mark.parametrize("title", [None, "", "   "])
def test_no_title_is_none(title):
    assert clean_title(title) is None


def test_text_is_nfc_without_control_characters_or_nul():
    raw = "Cafe\u0301 in Kyi\u0308v\x00\x07 opened\u200b again.\r\n\r\n\r\n\tSecond\u00a0 paragraph\u2028third line\x85"
    text = clean_text(raw)
    assert text == "Café in Kyïv opened again.\n\nSecond paragraph\nthird line"
    assert all(ord(c) >= 32 or c == "\n" for c in text)


def test_the_content_hash_ignores_case_punctuation_and_spacing():
    assert content_hash("Drones hit Odesa, officials said.") == content_hash("drones  hit odesa officials said")
    assert content_hash("Drones hit Odesa.") != content_hash("Drones hit Kharkiv.")


EN = "Russian forces struck the city overnight with drones and missiles, damaging homes and a school, officials said."
UK = "Російські війська вночі атакували місто дронами та ракетами, пошкоджено будинки та школу, повідомили посадовці."
RU = "Российские войска ночью атаковали город дронами и ракетами, повреждены дома и школа, сообщили чиновники."
FR = "Les forces russes ont frappé la ville pendant la nuit avec des drones et des missiles, endommageant des maisons."
DE = "Russische Truppen haben die Stadt in der Nacht mit Drohnen und Raketen angegriffen und Häuser beschädigt."


@pytest.mark.parametrize(
    ("text", "hint", "language"),
    [
        (EN, None, "en"),
        (UK, None, "uk"),
        (RU, None, "ru"),
        (FR, None, "fr"),
        (DE, None, "de"),
        (EN, "en-GB", "en"),
        (UK, "en", "uk"),  # a template's lang="en" around a Ukrainian article: the text wins
        (RU, "uk", "ru"),
        (FR, "de_DE", "fr"),
        ("Kyiv", "uk", "uk"),  # too short to tell: the declaration decides
        ("", "ru-RU", "ru"),
        ("", None, None),
        ("12 34 56", "xx-invalid", None),
    ],
)
def test_language_comes_from_the_text_with_the_declaration_as_a_hint(text, hint, language):
    assert detect_language(text, hint) == language


@pytest.mark.parametrize(
    ("url", "day"),
    [
        ("https://a.example/2024/06/03/strike.html", "2024-06-03"),
        ("https://a.example/news/2024-06-03-strike", "2024-06-03"),
        ("https://a.example/news/20240603/strike", "2024-06-03"),
        ("https://a.example/2024/6/3/strike", "2024-06-03"),
        ("https://a.example/news/strike-40211.html", None),
        ("https://a.example/2024/13/45/strike", None),
    ],
)
def test_dates_in_article_urls(url, day):
    found = date_from_url(url)
    assert (found.date().isoformat() if found else None) == day


FEED = datetime(2024, 6, 3, 7, 15, tzinfo=UTC)
FETCHED = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
DATED = "https://a.example/2024/06/02/strike.html"
UNDATED = "https://a.example/news/strike.html"


@pytest.mark.parametrize(
    ("article", "feed", "url", "expected", "source"),
    [
        ("2024-06-03T09:40:00+03:00", FEED, DATED, datetime(2024, 6, 3, 6, 40, tzinfo=UTC), "article"),
        ("2024-06-03T06:40:00Z", None, UNDATED, datetime(2024, 6, 3, 6, 40, tzinfo=UTC), "article"),
        ("2024-06-03T06:40:00", None, UNDATED, datetime(2024, 6, 3, 6, 40, tzinfo=UTC), "article"),  # naive: UTC
        ("2024-06-03", FEED, DATED, FEED, "feed"),  # a bare day and the feed's time on that day: the feed is precise
        ("2024-06-01", FEED, DATED, datetime(2024, 6, 1, tzinfo=UTC), "article"),  # another day: the article's
        ("2031-01-01T00:00:00Z", FEED, DATED, FEED, "feed"),  # the future: rejected to the next source
        ("1987-05-01", FEED, DATED, FEED, "feed"),  # before 1990: rejected
        ("not a date", FEED, DATED, FEED, "feed"),
        (None, FEED, DATED, FEED, "feed"),
        (None, FEED.replace(year=2031), DATED, datetime(2024, 6, 2, tzinfo=UTC), "url"),
        (None, None, DATED, datetime(2024, 6, 2, tzinfo=UTC), "url"),
        (None, None, UNDATED, FETCHED, "fetched"),
        (None, datetime(2024, 6, 3, 10, 15, tzinfo=timezone(timedelta(hours=3))), UNDATED,
         datetime(2024, 6, 3, 7, 15, tzinfo=UTC), "feed"),
        # The "no date" placeholders of some CMSs (.NET's DateTime.MinValue with the server's offset): out of
        # datetime's range in UTC, so implausible, not the page's failure.
        ("0001-01-01T00:00:00+03:00", FEED, DATED, FEED, "feed"),
        ("9999-12-31T23:00:00-05:00", FEED, DATED, FEED, "feed"),
        # A bare day is the page's own calendar day: 21:30 in New York on the 2nd is the 3rd in UTC.
        ("2024-06-02", datetime(2024, 6, 3, 1, 30, tzinfo=UTC), UNDATED, datetime(2024, 6, 3, 1, 30, tzinfo=UTC), "feed"),
        ("2024-06-03", datetime(2024, 6, 2, 14, 30, tzinfo=UTC), UNDATED, datetime(2024, 6, 2, 14, 30, tzinfo=UTC), "feed"),
        ("2024-06-01", datetime(2024, 6, 3, 1, 30, tzinfo=UTC), UNDATED, datetime(2024, 6, 1, tzinfo=UTC), "article"),
        # A bare day found on the page more than a day from its URL's (htmldate's oldest date: a sidebar
        # teaser's) gave way to nothing: the URL's day, or the feed's time, is the article's.
        ("2024-05-20", FEED, DATED, FEED, "feed"),
        ("2024-05-20", None, DATED, datetime(2024, 6, 2, tzinfo=UTC), "url"),
        ("2024-05-20T10:00:00Z", FEED, DATED, datetime(2024, 5, 20, 10, tzinfo=UTC), "article"),  # with its time: kept
    ],
)
def test_published_at_resolves_in_order_in_utc_with_its_source(article, feed, url, expected, source):
    published, where = resolve_published(article=article, feed=feed, url=url, fetched=FETCHED, now=NOW)
    assert (published, where) == (expected, source)
    assert published is not None and published.utcoffset() == timedelta(0)


def test_no_plausible_date_at_all_is_none():
    assert resolve_published(article=None, feed=None, url=UNDATED, fetched=None, now=NOW) == (None, None)


TEXT = ("Russian drones struck the port of Odesa overnight, damaging two warehouses. No one was hurt, the "
        "regional governor said. Firefighters worked until dawn. " * 3).strip()


@pytest.mark.parametrize(
    ("feed_summary", "expected_start"),
    [
        ("<p>Drones hit two warehouses in the port of Odesa overnight, the governor said.</p>",
         "Drones hit two warehouses in the port of Odesa overnight"),
        ("Drones hit two warehouses in the port of Odesa overnight, the governor said. The post Drone strike "
         "appeared first on Odesa Daily.", "Drones hit two warehouses"),
        ("Odesa port hit", "Russian drones struck the port of Odesa overnight"),  # too short to say anything
        ("Continue reading...", "Russian drones struck"),
        ("Drone strike damages warehouses in the Odesa port overnight", "Russian drones struck"),  # just the title
        (None, "Russian drones struck"),
    ],
)
def test_summary_is_the_feeds_when_meaningful_else_the_first_sentences(feed_summary, expected_start):
    summary = summarize(TEXT, feed_summary, title="Drone strike damages warehouses in the Odesa port overnight")
    assert summary is not None and summary.startswith(expected_start)
    assert "appeared first on" not in summary and len(summary) <= 1000


def test_the_first_sentences_stop_at_a_sentence_end():
    summary = summarize(TEXT, None, max_chars=120)
    assert summary == "Russian drones struck the port of Odesa overnight, damaging two warehouses. No one was hurt, the regional governor said."
    long_sentence = "word " * 200
    cut = summarize(long_sentence, None, max_chars=100)
    assert cut is not None and len(cut) <= 101 and cut.endswith("…")


def test_the_report_takes_the_feeds_author_and_title_when_the_page_has_none():
    job = PageJob(entry_id=7, source_id=3, url=UNDATED, final_url=UNDATED, body=b"", fetched_at=FETCHED,
                  feed_title="Drone strike on Odesa port | Odesa Daily", feed_author="Olena Kovalenko and Taras Hrytsenko",
                  feed_published_at=FEED, feed_summary=None)
    report = to_report(job, Extracted(text=f"  {TEXT}\x00 ", method="feed-content"))
    assert report.title == "Drone strike on Odesa port"
    assert report.authors == ["Olena Kovalenko", "Taras Hrytsenko"]
    assert (report.published_at, report.published_at_source) == (FEED, "feed")
    assert report.language == "en" and report.extraction_method == "feed-content"
    assert report.text == TEXT and report.word_count == len(TEXT.split())
    assert report.summary and report.summary.startswith("Russian drones struck")
