"""`sitrep stories`: the largest recent stories with their sources, as the user sees them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sitrep import roles
from tests.test_roles import _as
from tests.test_store import DAY, _load, _report, _source
from tests.texts import article, text


def test_stories_lists_the_largest_recent_stories_with_their_sources(sitrep, conn):
    wire, herald, post = _source(conn, "Kyiv Wire"), _source(conn, "Steppe Herald"), _source(conn, "Frontline Post")
    original = article(1)
    _load(conn, wire, _report(conn, wire, "https://wire.example/kharkiv.html", text(original)))
    _load(conn, herald, _report(conn, herald, "https://herald.example/kharkiv.html", text(original[:-1])))
    later = DAY + timedelta(hours=3)  # the longest copy, published later: not the representative
    _load(conn, post, _report(conn, post, "https://post.example/kharkiv.html", text(["KHARKIV (Wire)", *original]),
                              published=later))
    _load(conn, post, _report(conn, post, "https://post.example/odesa.html", text(article(2))))

    status, out, _ = sitrep("stories", "--days", "1")
    assert status == 0
    assert "2 largest stories" in out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "Frontline Post" in line)
    assert "│       3 │       3 │" in lines[first]  # the syndicated story first: 3 reports from 3 sources
    assert "Kyiv Wire" in out and "Steppe Herald" in out
    assert "wire.example" in out and "post.example/kharkiv" not in out  # the representative's URL

    status, out, _ = sitrep("stories", "--min-reports", "2")
    assert status == 0 and "1 largest stories" in out and "odesa" not in out


def test_stories_with_nothing_loaded_says_what_to_do(sitrep):
    status, out, _ = sitrep("stories")
    assert status == 0 and "sitrep ingest" in out


def test_stories_reindex_builds_the_index_of_older_reports(sitrep, conn):
    src = _source(conn, "wire")
    _load(conn, src, _report(conn, src, "https://wire.example/a.html", text(article(3))))
    conn.execute("DELETE FROM story_bands")
    conn.commit()
    status, out, _ = sitrep("stories", "--reindex", "missing")
    assert status == 0 and "1 report(s) indexed" in out
    assert conn.execute("SELECT count(DISTINCT report_id) FROM story_bands").fetchone()[0] == 1


def test_stories_reindex_all_runs_as_the_loader(sitrep, conn, settings_env, monkeypatch):
    # The compose deployment's commands connect as sitrep_loader, which could not TRUNCATE story_bands.
    src = _source(conn, "wire")
    _load(conn, src, _report(conn, src, "https://wire.example/a.html", text(article(3))))
    conn.commit()
    monkeypatch.setenv("SITREP_DATABASE_URL", _as(str(settings_env.database_url), roles.LOADER))
    status, out, err = sitrep("stories", "--reindex", "all")
    assert status == 0 and "1 report(s) indexed" in out, err


@pytest.mark.parametrize("argv", [["--days", "0"], ["--limit", "0"], ["--min-reports", "-1"],
                                  # the database's own errors before: "interval out of range", "bigint out of range"
                                  ["--days", "inf"], ["--days", "1e300"], ["--limit", "99999999999999999999"]])
def test_stories_refuses_bad_arguments_in_one_line(sitrep, argv):
    status, _, err = sitrep("stories", *argv)
    assert status == 2
    assert err.startswith("error: --") and len(err.strip().splitlines()) == 1
