"""Fixtures: a real PostgreSQL (the embedded one, private to the test run), real HTTP on loopback.

- ``pg_server``: one embedded server per test session, its data in a temporary folder (never the
  demo's), with a migrated template database.
- ``db_url`` / ``conn``: a fresh database per test, cloned from the template (fast, isolated).
- ``settings``: Settings pointing at that database, private hosts allowed (loopback tests only).
- ``site``: a loopback HTTP server whose routes a test fills in (feeds, pages, misbehaviour).
- ``demo_sites``: the offline demo corpus served on loopback.
- ``run_dag``: runs a real DAG through ``dag.test()`` in a child process against ``settings``.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from sitrep import db, roles
from sitrep.settings import FetchSettings, Settings

# Tests never need the network beyond loopback: make any accidental proxy use impossible.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)

#: Connections a test tried beyond loopback (refused; the test fails): a guard that regressed must not
#: reach the cloud metadata address, or anything else, from a CI machine.
_BEYOND_LOOPBACK: list[str] = []


def _refuse_beyond_loopback(event: str, args: tuple) -> None:
    if event != "socket.connect" or not isinstance(args[1], tuple) or not args[1]:
        return  # a local (AF_UNIX) socket
    host = str(args[1][0]).removeprefix("::ffff:")
    if not (host.startswith("127.") or host == "::1"):
        _BEYOND_LOOPBACK.append(f"{host}:{args[1][1]}")
        raise ConnectionRefusedError(f"the tests connect to loopback only, not to {host}")


sys.addaudithook(_refuse_beyond_loopback)


@pytest.fixture(autouse=True)
def _only_loopback() -> Iterator[None]:
    _BEYOND_LOOPBACK.clear()
    yield
    assert not _BEYOND_LOOPBACK, f"the test tried to connect beyond loopback: {_BEYOND_LOOPBACK}"

TEMPLATE = "sitrep_template"
#: The consumer roles' passwords on the session's server (the server asks every login for one).
ROLE_PASSWORDS = {"sitrep_reader": "reader-password-for-tests", "sitrep_loader": "loader-password-for-tests"}


@pytest.fixture(scope="session")
def test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sitrep-home")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[db.EmbeddedPostgres]:
    server = db.EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    template_url = server.start(TEMPLATE)
    with db.connect(template_url) as conn:
        db.migrate(conn)
        roles.set_passwords(conn, ROLE_PASSWORDS)
        conn.commit()
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server: db.EmbeddedPostgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    db._create_database(pg_server.url("postgres"), name, template=TEMPLATE)
    return pg_server.url(name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with db.connect(db_url) as connection:
        yield connection


@pytest.fixture
def settings(db_url: str, test_home: Path) -> Settings:
    return Settings(
        database_url=db_url,
        home=test_home,
        fetch=FetchSettings(allow_private_hosts=True, per_host_delay=0.0, per_host_concurrency=8, retries=1,
                            connect_timeout=3, read_timeout=5, total_timeout=10),
        workers=2,
    )


@pytest.fixture
def settings_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The same settings exported as SITREP_* variables, for code that reads the environment."""
    monkeypatch.setenv("SITREP_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("SITREP_HOME", str(settings.home))
    monkeypatch.setenv("SITREP_ALLOW_PRIVATE_HOSTS", "1")
    monkeypatch.setenv("SITREP_PER_HOST_DELAY", "0")
    monkeypatch.setenv("SITREP_PER_HOST_CONCURRENCY", "8")
    return settings


@pytest.fixture
def sitrep(settings_env, capsys):  # type: ignore[no-untyped-def]
    """Run `sitrep ARGS...` in-process against the test database; returns (status, stdout, stderr)."""
    from sitrep import cli

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


# ------------------------------------------------------------------------------------------ HTTP


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


class Site:
    """A loopback web server whose routes tests set: ``site.add('/feed.xml', body, headers)``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[tuple[str, dict[str, str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                site.hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = site.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.handler is not None:
                    route.handler(self)
                    return
                self.send_response(route.status)
                for key, value in route.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            do_POST = do_GET  # noqa: N815 - webhooks POST; a route answers it as it answers a GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def add(self, path: str, body: bytes | str = b"", *, status: int = 200, headers: dict[str, str] | None = None,
            handler: Callable[[BaseHTTPRequestHandler], None] | None = None) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = Route(body=data, status=status, headers=headers or {"Content-Type": "text/html; charset=utf-8"},
                                  handler=handler)
        return self.url(path)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.hits if p.split("?", 1)[0] == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.close()


@pytest.fixture
def demo_sites():  # type: ignore[no-untyped-def]
    from sitrep import demo

    with demo.serve_corpus() as sites:
        yield sites


# ------------------------------------------------------------------------------------------- DAGs


@pytest.fixture
def run_dag(settings: Settings) -> Callable[..., bool]:
    """Run a DAG for real (dag.test() in a child process); returns True when the run succeeded."""
    from sitrep import runner

    def run(dag_id: str, conf: dict | None = None, extra_env: dict[str, str] | None = None,
            timeout: float = 300) -> bool:
        env = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_PER_HOST_CONCURRENCY": "8",
               "SITREP_RETRIES": "1", **(extra_env or {})}
        dag_run = runner.start_dag(settings, str(settings.database_url), dag_id, conf, env)
        ok = dag_run.wait(timeout)
        if not ok:
            print(dag_run.tail(60))
        return ok

    return run


def empty_database(pg_server: db.EmbeddedPostgres, tmp_path: Path) -> tuple[str, Path]:
    """A new database with no migration applied, and a copy of sql/ the test may change (an older
    release's files, the next release's): (its URL, the copy's folder)."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    db._create_database(pg_server.url("postgres"), name)
    folder = tmp_path / "sql"
    shutil.copytree(db.sql_dir(), folder)
    return pg_server.url(name), folder


def make_settings(settings: Settings, **changes: object) -> Settings:
    return replace(settings, **changes)  # type: ignore[arg-type]
