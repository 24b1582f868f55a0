"""`sitrep reextract`: stored raw pages extracted again without fetching; new revisions only where the
text changed, failed pages recovered, --since and --source honoured, and the command as a user sees it.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sitrep import cli, extract_health, store
from sitrep.errors import ConfigError
from sitrep.pipeline import build_reports
from sitrep.records import PageJob
from sitrep.reextract import parse_since, reextract, resolve_source
from sitrep.settings import ExtractSettings, Settings
from tests.pages import article_html, paragraphs

FETCHED = datetime.now(UTC) - timedelta(days=2)
TABLE = ("<table><tr><th>Region</th><th>Killed</th><th>Injured</th></tr><tr><td>Kharkiv oblast</td><td>14</td>"
         "<td>52</td></tr><tr><td>Donetsk oblast</td><td>21</td><td>67</td></tr></table>")


def _page(topic: str, *, table: bool = False) -> bytes:
    html = article_html(f"{topic} under fire", paragraphs(topic, 5), date="2024-06-03T09:40:00+03:00")
    return (html.replace("</article>", f"{TABLE}</article>") if table else html).encode("utf-8")


def _source(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("INSERT INTO sources (name, feed_url, host) VALUES (%s, %s, 'news.example') RETURNING source_id",
                       (name, f"https://news.example/{name}.xml")).fetchone()
    assert row is not None
    return int(row[0])


def _fetched(conn: psycopg.Connection, source_id: int, slug: str, body: bytes, *, status: str = "pending",
             fetched_at: datetime = FETCHED) -> PageJob:
    """An entry with its stored page, as the collect step leaves them."""
    url = f"https://news.example/{slug}.html"
    row = conn.execute("INSERT INTO entries (source_id, entry_key, link, status) VALUES (%s, %s, %s, %s) RETURNING entry_id",
                       (source_id, url, url, status)).fetchone()
    assert row is not None
    entry_id = int(row[0])
    pages = store.store_pages(conn, [(entry_id, url, url, 200, "text/html", fetched_at, body, f"sha-{slug}")])
    return PageJob(entry_id=entry_id, source_id=source_id, url=url, final_url=url, body=body, fetched_at=fetched_at,
                   page_id=pages[entry_id])


def _load(conn: psycopg.Connection, jobs: list[PageJob], options: ExtractSettings) -> None:
    """The collect and load steps for these pages, with these extraction options."""
    built = build_reports(jobs, 1, options)
    with conn.transaction():
        store.stage_reports(conn, [b for b in built if not hasattr(b, "reason")])
        extract_health.record(conn, jobs, built)
    store.load_staged(conn, sorted({j.source_id for j in jobs}))


def _reports(conn: psycopg.Connection) -> dict[str, tuple[int, int, str]]:
    rows = conn.execute("SELECT url, revision, ingest_seq, text FROM reports_v1").fetchall()
    return {url: (revision, seq, text) for url, revision, seq, text in rows}


@pytest.fixture
def loaded(conn, settings):
    """Two sources, three loaded reports (one page with a table), extracted without tables."""
    wire, herald = _source(conn, "wire"), _source(conn, "herald")
    jobs = [_fetched(conn, wire, "kharkiv", _page("Kharkiv", table=True)), _fetched(conn, wire, "odesa", _page("Odesa")),
            _fetched(conn, herald, "sumy", _page("Sumy", table=True))]
    conn.commit()
    _load(conn, jobs, replace(settings.extract, include_tables=False))
    return {"wire": wire, "herald": herald}


def test_reextract_revises_only_the_reports_whose_text_changed(conn, settings, loaded):
    before = _reports(conn)
    assert "Kharkiv oblast" not in before["https://news.example/kharkiv.html"][2]
    result = reextract(replace(settings, extract=replace(settings.extract, include_tables=True)), conn)
    assert (result.pages, result.changed, result.unchanged, result.recovered, result.failed) == (3, 2, 1, 0, 0)
    after = _reports(conn)
    for slug in ("kharkiv", "sumy"):  # a table now: a new revision, and a new ingest_seq for readers
        url = f"https://news.example/{slug}.html"
        assert after[url][0] == before[url][0] + 1 and after[url][1] > max(seq for _, seq, _ in before.values())
        assert "Kharkiv oblast" in after[url][2]
    odesa = "https://news.example/odesa.html"
    assert after[odesa] == before[odesa]  # same text: untouched
    statuses = {s for (s,) in conn.execute("SELECT status FROM entries").fetchall()}
    assert statuses == {"loaded"}  # re-extraction does not turn loaded entries into duplicates


def test_a_second_reextract_with_the_same_settings_changes_nothing(conn, settings, loaded):
    changed = replace(settings, extract=replace(settings.extract, include_tables=True))
    reextract(changed, conn)
    before = _reports(conn)
    result = reextract(changed, conn)
    assert (result.changed, result.unchanged) == (0, 3)
    assert _reports(conn) == before


def test_only_the_pages_of_the_given_source_and_time(conn, settings, loaded):
    changed = replace(settings, extract=replace(settings.extract, include_tables=True))
    assert reextract(changed, conn, source_id=loaded["herald"]).pages == 1
    assert reextract(changed, conn, since=datetime.now(UTC) - timedelta(hours=1)).pages == 0
    assert reextract(changed, conn, since=FETCHED - timedelta(hours=1)).pages == 3


def test_a_page_that_failed_before_and_extracts_now_becomes_a_report(conn, settings, loaded):
    job = _fetched(conn, loaded["wire"], "kupiansk", _page("Kupiansk"), status="failed")
    conn.execute("UPDATE entries SET error = 'no article text (old extractor)' WHERE entry_id = %s", (job.entry_id,))
    conn.commit()
    result = reextract(settings, conn)
    assert result.recovered == 1
    status, report_id = conn.execute("SELECT status, report_id FROM entries WHERE entry_id = %s", (job.entry_id,)).fetchone()
    assert status == "loaded" and report_id is not None
    assert "https://news.example/kupiansk.html" in _reports(conn)


def test_a_page_that_fails_now_keeps_its_report(conn, settings, loaded):
    conn.execute("UPDATE pages SET body_zlib = %s WHERE url = 'https://news.example/odesa.html'",
                 (zlib.compress(b"<html><body><nav>Home</nav></body></html>"),))
    conn.commit()
    result = reextract(settings, conn)
    assert result.failed == 1
    assert "https://news.example/odesa.html" in _reports(conn)
    logged = conn.execute("SELECT count(*) FROM extraction_log WHERE reextract AND failure IS NOT NULL").fetchone()
    assert logged == (1,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-06-01", datetime(2024, 6, 1, tzinfo=UTC)),
        ("2024-06-01T12:00+03:00", datetime(2024, 6, 1, 9, 0, tzinfo=UTC)),
        ("24h", datetime(2024, 6, 9, 12, 0, tzinfo=UTC)),
        ("7d", datetime(2024, 6, 3, 12, 0, tzinfo=UTC)),
        ("90m", datetime(2024, 6, 10, 10, 30, tzinfo=UTC)),
        (None, None),
    ],
)
def test_since_takes_dates_timestamps_and_spans(value, expected):
    assert parse_since(value, now=datetime(2024, 6, 10, 12, 0, tzinfo=UTC)) == expected


@pytest.mark.parametrize("value", ["yesterday", "7 days", "2024-13-01", "-3d"])
def test_a_bad_since_says_what_to_write(value):
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        parse_since(value)


def test_sources_by_id_name_feed_url_or_host(conn, loaded):
    assert resolve_source(conn, "wire") == loaded["wire"]
    assert resolve_source(conn, str(loaded["herald"])) == loaded["herald"]
    assert resolve_source(conn, "https://news.example/herald.xml") == loaded["herald"]
    with pytest.raises(ConfigError, match="no source matches 'nope'"):
        resolve_source(conn, "nope")
    with pytest.raises(ConfigError, match="matches several sources"):
        resolve_source(conn, "news.example")


def test_the_command_prints_a_table_and_errors_in_one_line(conn, settings_env: Settings, loaded, capsys):
    assert cli.main(["reextract", "--source", "wire", "--since", "30d"]) == 0
    out = capsys.readouterr().out
    assert "sitrep reextract" in out and "unchanged" in out
    assert cli.main(["reextract", "--since", "someday"]) != 0
    err = capsys.readouterr()
    assert "YYYY-MM-DD" in err.out + err.err and "Traceback" not in err.out + err.err
    assert cli.main(["extraction-health"]) == 0
    assert "Extraction health per source" in capsys.readouterr().out


def test_a_report_seen_again_since_its_page_is_still_reextracted(conn, settings):
    # A later fetch (its AMP copy, declaring the same canonical) stamps the report's checked_at; the page
    # was re-staged with its old fetch time, which the loader took for an older fetch: "unchanged".
    no_tables = replace(settings.extract, include_tables=False)
    wire, amp = _source(conn, "wire"), _source(conn, "amp")
    url = "https://news.example/kharkiv.html"
    html = article_html("Kharkiv under fire", paragraphs("Kharkiv", 5), date="2024-06-03T09:40:00+03:00", canonical=url)
    body = html.replace("</article>", f"{TABLE}</article>").encode()
    first = _fetched(conn, wire, "kharkiv", body)
    conn.commit()
    _load(conn, [first], no_tables)
    again = _fetched(conn, amp, "amp/kharkiv", body, fetched_at=FETCHED + timedelta(hours=1))
    conn.commit()
    _load(conn, [again], no_tables)

    result = reextract(replace(settings, extract=replace(settings.extract, include_tables=True)), conn)

    assert result.changed == 1 and "Kharkiv oblast" in _reports(conn)[url][2]


def test_an_interrupted_reextract_leaves_nothing_for_the_next_load(conn, settings_env, loaded, monkeypatch):
    # Each chunk committed its staged rows, then merged them in another transaction: a Ctrl-C between the
    # two left them staged, and the next scheduled load applied the re-extraction the user had stopped.
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "load_staged", interrupted)
    monkeypatch.setenv("SITREP_EXTRACT_INCLUDE_TABLES", "1")
    assert cli.main(["reextract"]) == 130
    monkeypatch.undo()
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM staged_reports").fetchone()[0] == 0
    before = _reports(conn)
    store.load_staged(conn, [loaded["wire"], loaded["herald"]])  # what the next scheduled load does
    assert _reports(conn) == before
