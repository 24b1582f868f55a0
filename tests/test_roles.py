"""The consumer role reads the versioned views and nothing else; the loader role runs the pipeline."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from sitrep import roles
from sitrep.cli import main
from sitrep.errors import ConfigError
from tests.conftest import ROLE_PASSWORDS
from tests.reports import load_reports, paragraph


def _as(db_url: str, role: str, password: str | None = None) -> str:
    parts = urlsplit(db_url)
    secret = quote(password or ROLE_PASSWORDS[role], safe="")
    return urlunsplit(parts._replace(netloc=f"{role}:{secret}@{parts.hostname}:{parts.port}"))


def db_url_of(conn: psycopg.Connection) -> str:
    info = conn.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


@pytest.mark.parametrize("statement", [
    "SELECT count(*) FROM reports",
    "SELECT count(*) FROM sources",
    "SELECT count(*) FROM alerts",
    "SELECT count(*) FROM alert_rules",
    "SELECT count(*) FROM export_manifests",
    "SELECT count(*) FROM downstream_watermarks",
    "INSERT INTO downstream_watermarks (consumer) VALUES ('mine')",
    "UPDATE reports SET title = 'x'",
    "DELETE FROM report_urls",
    "CREATE TABLE public.mine (id int)",
    "SELECT nextval('ingest_seq')",
])
def test_the_reader_reads_the_views_and_cannot_touch_anything_else(conn, db_url, statement):
    load_reports(conn, {"key": "a", "title": "A report", "text": paragraph("a"), "relevance": 0.9})
    with psycopg.connect(_as(db_url, roles.READER), autocommit=True) as reader:
        assert reader.execute("SELECT count(*), max(title) FROM reports_v1").fetchone() == (1, "A report")
        # Even with the session made writable on purpose, the grants refuse it.
        reader.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(statement)


def test_reader_sessions_are_read_only_by_default(db_url):
    with psycopg.connect(_as(db_url, roles.READER), autocommit=True) as reader:
        assert reader.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("CREATE TEMP TABLE scratch (id int)")


def test_the_loader_can_stage_and_load_reports(db_url):
    with psycopg.connect(_as(db_url, roles.LOADER)) as loader:
        ids = load_reports(loader, {"key": "a", "title": "A report", "text": paragraph("a")})
        assert loader.execute("SELECT report_id FROM reports_v1").fetchall() == [(ids[0],)]


def test_passwords_are_set_from_the_environment_as_scram_verifiers(conn, settings_env, monkeypatch, capsys):
    monkeypatch.setenv("SITREP_READER_PASSWORD", "correct horse battery staple")
    monkeypatch.delenv("SITREP_LOADER_PASSWORD", raising=False)
    try:
        assert main(["roles", "passwords"]) == 0

        assert "set from SITREP_READER_PASSWORD" in capsys.readouterr().out
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (roles.READER,)).fetchone()[0]
        assert stored.startswith("SCRAM-SHA-256$") and "staple" not in stored
        conn.commit()
        psycopg.connect(_as(db_url_of(conn), roles.READER, "correct horse battery staple")).close()
    finally:
        roles.set_passwords(conn, ROLE_PASSWORDS)  # roles are the server's: the other tests log in with these
        conn.commit()


def test_the_embedded_server_asks_every_login_for_a_password(db_url):
    # It listens on 127.0.0.1, where every local account can connect: it trusted them all as superuser.
    parts = urlsplit(db_url)
    for user in ("postgres", roles.READER, roles.LOADER):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))).close()


def test_a_short_or_missing_password_is_refused(conn, monkeypatch):
    monkeypatch.delenv("SITREP_READER_PASSWORD", raising=False)
    monkeypatch.delenv("SITREP_LOADER_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="export SITREP_READER_PASSWORD"):
        roles.passwords_from_env()
    with pytest.raises(ConfigError, match="shorter than 12"):
        roles.set_passwords(conn, {roles.LOADER: "short"})


def test_the_operator_commands_run_as_the_loader(sitrep, settings_env, monkeypatch):
    """The compose deployment's containers connect as sitrep_loader: every command migrates first, which
    failed for it with "permission denied for schema public" before anything else ran."""
    monkeypatch.setenv("SITREP_DATABASE_URL", _as(str(settings_env.database_url), roles.LOADER))
    for argv in (["feeds", "add", "http://127.0.0.1:9/feed.xml"], ["feeds", "list"], ["alerts", "list"], ["stats"],
                 ["stories"], ["db", "migrate"]):
        status, out, err = sitrep(*argv)
        assert status == 0 and "permission denied" not in out + err, (argv, err)
