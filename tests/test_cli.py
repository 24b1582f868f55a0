"""The `sitrep` command as a user types it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from sitrep import cli, db
from sitrep.settings import PROJECT_ROOT

SEED = PROJECT_ROOT / "seeds" / "samples" / "000_b27345ed7055cdc8.txt"


def test_feeds_add_many_then_list(sitrep, conn):
    status, out, _ = sitrep("feeds", "add", "https://a.example/rss.xml", "https://b.example/atom.xml")
    assert status == 0 and "2 feed(s) added" in out
    status, out, _ = sitrep("feeds", "add", "https://a.example/rss.xml", "--name", "A")
    assert status == 0 and "0 feed(s) added, 1 already known" in out
    status, out, _ = sitrep("feeds", "list")
    assert status == 0 and "a.example" in out and "b.example" in out and "2 feed(s)" in out


@pytest.mark.parametrize("url", ["not a url", "https://a.example:99999/rss.xml", "https://a.example/" + "r" * 3000])
def test_feeds_add_refuses_a_bad_url_in_one_line(sitrep, url):
    status, out, err = sitrep("feeds", "add", url)
    assert status == 2
    assert "is not a feed URL" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


@pytest.mark.parametrize(("content", "says"), [
    ("- url: https://a.example/rss.xml\n  interval_minutes: ten\n", "interval_minutes"),
    ("- url: https://a.example/rss.xml\n  interval_minutes: -5\n", "interval_minutes"),
    ("- url: https://a.example/rss.xml\n  name: [a, b]\n", "name"),
    (b"\xff\xfe- url: https://a.example/rss.xml\n", "UTF-8"),
    (None, "directory"),
])
def test_feeds_import_refuses_a_malformed_file_in_one_line_and_adds_nothing(sitrep, conn, tmp_path, content, says):
    path = tmp_path / "feeds.yaml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    status, _, err = sitrep("feeds", "import", str(path))
    assert status == 2 and says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 0


@pytest.mark.parametrize("interval", ["-5", "0", "99999999999"])
def test_feeds_add_refuses_an_interval_out_of_range(sitrep, conn, interval):
    status, _, err = sitrep("feeds", "add", "https://a.example/rss.xml", "--interval", interval)
    assert status == 2 and "interval" in err and "Traceback" not in err
    assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 0


def test_feeds_import_reads_the_production_list_without_touching_the_network(sitrep, conn):
    status, out, _ = sitrep("feeds", "import", str(PROJECT_ROOT / "seeds" / "feeds.yaml"))
    assert status == 0
    count = conn.execute("SELECT count(*) FROM sources WHERE kind = 'feed'").fetchone()[0]
    assert count >= 10 and f"{count} feed(s) added" in out
    assert conn.execute("SELECT count(*) FROM poll_log").fetchone()[0] == 0


def test_feeds_import_of_a_malformed_file_is_one_line(sitrep, tmp_path):
    bad = tmp_path / "feeds.yaml"
    bad.write_text("feeds: [ {url: https://x.example/rss, name: [unclosed")
    status, _, err = sitrep("feeds", "import", str(bad))
    assert status == 2 and "not valid YAML" in err and "Traceback" not in err
    status, _, err = sitrep("feeds", "import", str(tmp_path / "missing.yaml"))
    assert status == 2 and "no such file" in err


def test_an_error_naming_a_path_with_brackets_is_shown_as_written(sitrep, tmp_path):
    # "[/x]" in a path was read as Rich markup: a MarkupError traceback instead of the error.
    status, _, err = sitrep("feeds", "import", str(tmp_path / "[/x]" / "[bold]feeds.yaml"))
    assert status == 2 and "Traceback" not in err
    assert f"{tmp_path}/[/x]/[bold]feeds.yaml: no such file" in err.replace("\n", "")


def test_seed_sample_loads_with_its_date_and_method(sitrep, conn):
    status, out, _ = sitrep("ingest-files", str(SEED))
    assert status == 0
    row = conn.execute(
        "SELECT published_at::date::text, published_at_source, extraction_method, word_count, language"
        " FROM reports_v1"
    ).fetchone()
    assert row[:3] == ("2023-03-21", "article", "file")
    assert row[3] > 300 and row[4] == "en"
    assert conn.execute("SELECT text FROM reports_v1").fetchone()[0].startswith("Ukrainian forces have launched")
    # Loading it again adds nothing.
    status, out, err = sitrep("ingest-files", str(SEED))
    assert status == 0, err
    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == 1


def test_ingest_files_with_a_bad_date_says_which_file(sitrep, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("date 21/03/2023 Something happened.")
    status, _, err = sitrep("ingest-files", str(bad))
    assert status == 2 and "bad.txt" in err and "YYYY-MM-DD" in err


def test_db_url_prints_the_url_in_use_on_its_last_line(sitrep, settings):
    status, out, _ = sitrep("db", "url")
    assert status == 0 and out.strip().splitlines()[-1] == settings.database_url


def test_query_prints_a_table(sitrep):
    status, out, _ = sitrep("query", "SELECT 41 + 1 AS answer")
    assert status == 0 and "answer" in out and "42" in out
    status, out, _ = sitrep("query", "SELECT count(*) AS feeds FROM sources")  # every table, not only the views
    assert status == 0 and "feeds" in out


@pytest.mark.parametrize("sql", ["COMMIT; DELETE FROM sources", "SET TRANSACTION READ WRITE; DELETE FROM sources",
                                 "DELETE FROM sources", "SELECT pg_read_file('/etc/hostname')",
                                 "COPY (SELECT 1) TO PROGRAM 'true'"])
def test_query_writes_nothing_whatever_the_statement(sitrep, conn, sql):
    sitrep("feeds", "add", "https://a.example/rss.xml")
    status, _, err = sitrep("query", sql)
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 1


def test_query_refuses_a_do_block_that_would_reset_its_role(sitrep, tmp_path):
    # DO $$ RESET ROLE; EXECUTE 'COPY ... TO PROGRAM' $$ ran a shell command as the server's user.
    witness = tmp_path / "ran"
    block = "DO $$BEGIN RESET ROLE; EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch " + str(witness) + "'''; END$$"
    status, _, err = sitrep("query", block)
    assert status == 2 and "sitrep query runs one statement that reads" in err and "use psql" in err
    assert not witness.exists()


def test_query_reads_only_the_rows_it_prints_and_shows_values_as_sql_users_read_them(sitrep):
    # fetchall() then [:limit]: `SELECT * FROM reports_v1` on a production database read every report.
    status, out, _ = sitrep("query", "SELECT g FROM generate_series(1, 100000) g", "--limit", "3")
    assert status == 0 and "More rows were not read: raise --limit (now 3)" in out and "100000" not in out
    # the rows past --limit are never made: a client-side cursor received (and here failed on) them all,
    # 400 MB of client memory for `--limit 5` over a large reports_v1
    status, out, err = sitrep("query", "SELECT 1 / (g - 100000) AS x FROM generate_series(1, 200000) g", "--limit", "3")
    assert status == 0 and "More rows were not read" in out, err
    status, _, err = sitrep("query", "SELECT 1", "--limit", "0")
    assert status == 2 and "--limit: 0 is out of range: give a whole number from 1 to 1,000,000" in err
    status, out, _ = sitrep("query", "-- a note\n/* and another */ SELECT(41 + 1) AS answer")
    assert status == 0 and "42" in out  # comments and a parenthesis before the first word
    status, out, _ = sitrep("query", """SELECT '{"a": true, "b": null}'::jsonb AS j, ARRAY['x', 'y'] AS arr""")
    assert status == 0 and '{"a": true, "b": null}' in out and '["x", "y"]' in out


def test_query_on_a_database_never_migrated_reads_reports_v1(pg_server, monkeypatch, capsys):
    # The README's own example said `relation "reports_v1" does not exist` on a new database.
    name = f"q_{uuid.uuid4().hex[:10]}"
    db._create_database(pg_server.url("postgres"), name)
    monkeypatch.setenv("SITREP_DATABASE_URL", pg_server.url(name))
    status = cli.main(["query", "SELECT count(*) AS reports FROM reports_v1"])
    out, err = capsys.readouterr()
    assert status == 0 and "reports" in out, err


def test_values_from_the_web_are_shown_as_written_not_read_as_markup(sitrep):
    # "[/i] ..." in a title or a feed's name crashed the listing with a traceback (rich's MarkupError);
    # "[bold]" or "[link=...]" silently changed what was shown.
    status, out, err = sitrep("query", "SELECT '[/x] closing' AS t, '[bold]loud' AS u, '[video] Kyiv' AS v")
    assert status == 0 and "[/x] closing" in out and "[bold]loud" in out and "[video] Kyiv" in out, err
    sitrep("feeds", "add", "https://a.example/rss.xml", "--name", "Kyiv [/Post]")
    status, out, err = sitrep("feeds", "list")
    assert status == 0 and "Kyiv [/Post]" in out and "Traceback" not in err


def test_a_home_folder_that_cannot_be_made_is_one_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.delenv("SITREP_DATABASE_URL", raising=False)
    monkeypatch.setenv("SITREP_HOME", str(tmp_path / "file" / "home"))
    status = cli.main(["db", "start"])
    err = capsys.readouterr().err
    assert status == 2 and "Not a directory" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_dead_database_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("SITREP_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    status = cli.main(["feeds", "list"])
    err = capsys.readouterr().err
    assert status == 2 and "can't connect to PostgreSQL" in err and "Traceback" not in err


def _subcommands(parser) -> list[list[str]]:
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append([name])
                found.extend([name, *rest] for rest in _subcommands(sub))
    return found


def test_help_works_on_every_command():
    commands = _subcommands(cli.build_parser())
    assert ["feeds", "add"] in commands and ["ingest"] in commands
    for command in [[], *commands]:
        result = subprocess.run([sys.executable, "-m", "sitrep.cli", *command, "--help"],
                                capture_output=True, text=True, cwd=Path(PROJECT_ROOT))
        assert result.returncode == 0, (command, result.stderr)
        assert "usage:" in result.stdout


def test_an_airflow_connection_in_json_form_is_read(monkeypatch, capsys, db_url):
    # Airflow takes AIRFLOW_CONN_* as a URI or as JSON; sitrep refused the JSON form.
    from urllib.parse import urlsplit

    parts = urlsplit(db_url)
    monkeypatch.delenv("SITREP_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SITREP_POSTGRES", json.dumps({
        "conn_type": "postgres", "host": parts.hostname, "port": parts.port, "login": parts.username,
        "password": parts.password, "schema": parts.path.lstrip("/"), "extra": {"sslmode": "disable", "cursor": "x"}}))
    assert cli.main(["query", "SELECT current_database()"]) == 0
    assert parts.path.lstrip("/") in capsys.readouterr().out


@pytest.mark.parametrize("value, says", [
    ('{"conn_type": "mysql", "host": "db"}', "is not a postgres connection"),
    ('{"conn_type": "postgres", "host": ', "is not valid JSON"),
    ("mysql://db/x", "is neither a postgresql:// URI nor JSON"),
    ('{"conn_type": "postgres", "login": "u"}', "has no host"),
    ('{"conn_type": "postgres", "host": "db", "port": "abc"}', "port 'abc' is not a port number"),
    ('{"conn_type": "postgres", "host": "db", "port": 70000}', "port 70000 is not a port number"),
    ('{"conn_type": "postgres", "host": "db", "port": "\u00b2"}', "is not a port number"),  # isdigit() took it
    ('{"conn_type": "postgres", "host": "db", "extra": "{bad"}', "its extra is not JSON"),
    ('{"conn_type": "postgres", "host": "db", "extra": "[1]"}', "its extra is not a JSON object"),
])
def test_an_airflow_connection_that_is_not_postgres_is_one_line(monkeypatch, capsys, value, says):
    monkeypatch.delenv("SITREP_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SITREP_POSTGRES", value)
    assert cli.main(["query", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert says in err and "postgresql://user:password@host:5432/sitrep" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fields, parsed", [
    # a Unix socket's folder was read as the database name; a password without a login was dropped;
    # a bracketed IPv6 host was bracketed twice
    ({"host": "/var/run/postgresql", "port": 5433, "login": "sitrep", "password": None, "schema": "sitrep"},
     {"host": "/var/run/postgresql", "port": "5433", "user": "sitrep", "dbname": "sitrep"}),
    ({"host": "db", "port": None, "login": None, "password": "s3cret", "schema": "x"},
     {"host": "db", "password": "s3cret", "dbname": "x"}),
    ({"host": "[::1]", "port": "5432", "login": "u", "password": None, "schema": "d"},
     {"host": "::1", "port": "5432", "user": "u", "dbname": "d"}),
])
def test_a_connection_url_says_what_the_connection_says(fields, parsed):
    assert psycopg.conninfo.conninfo_to_dict(db.connection_url(**fields)) == parsed


def test_a_connection_url_keeps_any_password_whole():
    url = db.connection_url(host="db.internal", port="5433", login="sit rep", password="p@ss/w:rd%", schema="sitrep",
                            extra={"sslmode": "require", "cursor": "realdictcursor"})
    assert url == "postgresql://sit%20rep:p%40ss%2Fw%3Ard%25@db.internal:5433/sitrep?sslmode=require"
    assert psycopg.conninfo.conninfo_to_dict(url)["password"] == "p@ss/w:rd%"


def test_ingest_files_that_load_nothing_say_why_and_exit_non_zero(sitrep, conn, tmp_path):
    # An empty file showed "failed 1" and exit 0, its reason only in entries.error; an empty folder "files 0".
    empty = tmp_path / "empty.txt"
    empty.write_text("date 2024-06-03 ")
    status, out, err = sitrep("ingest-files", str(empty))
    assert status == 1 and f"{empty} not loaded: " in err and "none of the 1 file(s) loaded" in err
    status, out, err = sitrep("ingest-files", str(empty))  # again: it failed before, it is not "loaded before"
    assert status == 1 and "no text left" in err and "(as when it was first given)" in err, err
    status, out, err = sitrep("ingest-files", str(SEED))
    assert status == 0, err
    status, out, err = sitrep("ingest-files", str(SEED))  # again: loaded before, nothing failed
    assert status == 0 and "loaded before" in out, err
    (tmp_path / "none").mkdir()
    status, _, err = sitrep("ingest-files", str(tmp_path / "none"))
    assert status == 2 and "hold(s) no *.txt file" in err and len(err.strip().splitlines()) == 1


def test_ingest_files_takes_each_file_once_however_named_and_refuses_one_over_the_cap(sitrep, conn, tmp_path,
                                                                                     monkeypatch):
    # A folder and a file in it: "duplicate key value violates unique constraint staged_reports_pkey",
    # nothing loaded. A file of any size went to the extraction whole (a 30 MB one ran for over 13 minutes).
    folder = tmp_path / "wire"
    folder.mkdir()
    shutil.copy(SEED, folder / "a.txt")
    (folder / "huge.txt").write_text("date 2024-06-03 " + "Shelling went on overnight. " * 400)
    monkeypatch.setenv("SITREP_MAX_PAGE_BYTES", "5000")
    status, out, err = sitrep("ingest-files", str(folder), str(folder / "a.txt"), str(folder / ".." / "wire" / "a.txt"))
    assert status == 0, err
    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == 1
    # files, inserted, updated, aliased, failed: the file over the cap was counted, then overwritten with 0
    assert re.search(r"\b2\D+1\D+0\D+0\D+1\b", out.splitlines()[-2]), out


def test_an_export_path_with_brackets_is_shown_as_written(sitrep, tmp_path, monkeypatch):
    # A status line reads its text as Rich markup whatever the console says: "[/x]" raised MarkupError.
    monkeypatch.setenv("SITREP_EXPORT_PATH", str(tmp_path / "[/x]exports"))
    status, _, err = sitrep("export")
    assert status == 0, err


def test_the_demo_table_shows_every_id_date_and_count_whole(settings_env, capsys):
    # On the 160-column page of a pipe, Rich squeezed the short columns first: the id column blank,
    # language, words and story a bare "…", the date "2024-0…".
    from sitrep.pipeline import ingest_files

    ingest_files(settings_env, sorted((PROJECT_ROOT / "seeds" / "samples").glob("*.txt")))
    capsys.readouterr()
    cli.print_reports(settings_env)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "title" in line)
    row = next(line for line in out.splitlines() if "Ukrainian forces" in line)
    cells = dict(zip((c.strip() for c in header.strip("┃ ").split("┃")), (c.strip() for c in row.strip("│ ").split("│")),
                     strict=True))
    assert (cells["id"], cells["lang"], cells["words"], cells["story"], cells["published"]) == \
        ("1", "en", "329", "1", "2023-03-21"), cells
    assert all(len(line) <= 160 for line in out.splitlines())


@pytest.mark.parametrize("page", [40, 80, 120, 160, 250])
def test_the_demo_table_fits_the_page_dropping_the_least_wanted_columns(page):
    widths = cli._fit_columns(cli._REPORT_COLUMNS, page)
    lows = {name: low for name, low, _, _ in cli._REPORT_COLUMNS}
    assert all(width >= lows[name] for name, width in widths.items())
    assert sum(widths.values()) + 3 * len(widths) + 1 <= max(page, lows["title"] + 4)
    assert "title" in widths and (page < 160 or len(widths) == len(cli._REPORT_COLUMNS))


def test_more_command_line_mistakes_are_one_line_that_names_the_fix(sitrep, conn, monkeypatch, tmp_path):
    # --name with several URLs was dropped without a word ("2 feed(s) added")
    status, _, err = sitrep("feeds", "add", "https://a.example/rss.xml", "https://b.example/rss.xml", "--name", "X")
    assert status == 2 and "--name names one feed" in err and len(err.strip().splitlines()) == 1
    assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 0
    # a traceback (OverflowError, "date value out of range")
    for span in ("1000000d", "99999999999d"):
        status, _, err = sitrep("reextract", "--since", span)
        assert status == 2 and "reaches back before any date" in err and "Traceback" not in err
    # "canceling statement due to statement timeout", naming nothing to change
    monkeypatch.setenv("SITREP_STATEMENT_TIMEOUT_MS", "50")
    status, _, err = sitrep("query", "SELECT pg_sleep(2)")
    assert status == 2 and "raise it" in err and "SITREP_STATEMENT_TIMEOUT_MS" in err
    monkeypatch.delenv("SITREP_STATEMENT_TIMEOUT_MS")
    # "Not a directory: .../ok.txt/pg", naming no setting
    (tmp_path / "ok.txt").write_text("")
    monkeypatch.setenv("SITREP_HOME", str(tmp_path / "ok.txt"))
    status, _, err = sitrep("stats")
    assert status == 2 and "SITREP_HOME" in err and "is a file, not a folder" in err
