"""``sitrep airflow [start|stop|status]``: Airflow 3 with its UI on this machine, in the background.

``make airflow`` runs ``start``: the four Airflow components (api-server, scheduler, dag-processor,
triggerer) as background processes against the project's ``dags/``, with the LocalExecutor and a
PostgreSQL metadata database (SQLite cannot serve tasks that run at the same time): a database named
``airflow`` on the same server as sitrep's own (the embedded one unless SITREP_DATABASE_URL or the
``sitrep_postgres`` connection says otherwise; SITREP_AIRFLOW_DB_URL overrides it). ``make down`` runs
``stop``.

Everything it keeps lives in ``$SITREP_HOME/airflow`` (``.sitrep/airflow``):

- ``local.json``: the pids, port and URL of the running components (what ``stop`` ends);
- ``port``: the UI port of the last start, used again when it is free;
- ``simple_auth_manager_passwords.json``: the UI login, generated once (mode 0600), never in code;
- ``secrets.json``: the JWT and API secret keys the components share, generated once (mode 0600);
- ``logs/local/<component>.log``: each component's output; task logs are under ``logs/``.

Knobs: SITREP_AIRFLOW_PORT (default: the last port used, else a free one), SITREP_AIRFLOW_PARALLELISM
(tasks at once, default two per core), SITREP_AIRFLOW_DB_URL. Any ``AIRFLOW__*`` variable already set in
the environment wins over the values chosen here.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

from sitrep.commands import number
from sitrep.db import free_port, port_is_free
from sitrep.errors import SitrepError
from sitrep.settings import Settings, number_setting, port_number
from sitrep.tables import Table, console

__all__ = ["COMPONENTS", "LocalAirflow", "airflow_db_url", "register", "start", "status", "stop"]

#: The components, in start order; each is ``airflow <name>``.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USERNAME = "admin"
DEFAULT_START_TIMEOUT = 180.0
_STOP_GRACE = 30.0


@dataclass
class LocalAirflow:
    """What ``start`` launched: enough to reach it and to stop it."""

    url: str
    port: int
    username: str
    password_file: str
    pids: dict[str, int] = field(default_factory=dict)
    #: Process start times (psutil), so that a recycled pid is never mistaken for ours.
    started: dict[str, float] = field(default_factory=dict)

    @property
    def password(self) -> str:
        return str(json.loads(Path(self.password_file).read_text())[self.username])

    def alive(self) -> dict[str, bool]:
        return {name: _is_ours(pid, self.started.get(name)) for name, pid in self.pids.items()}


# ------------------------------------------------------------------------------------------ files


def _home(settings: Settings) -> Path:
    return settings.home / "airflow"


def _state_file(settings: Settings) -> Path:
    return _home(settings) / "local.json"


def _read_state(settings: Settings) -> LocalAirflow | None:
    try:
        return LocalAirflow(**json.loads(_state_file(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _private_json(path: Path, make: dict[str, str]) -> dict[str, str]:
    """A JSON file of secrets, created once with mode 0600; its keys missing from ``make`` are added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    merged = {**make, **current}
    if merged != current:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(merged, handle)
            handle.write("\n")
    os.chmod(path, 0o600)
    return merged


def _is_ours(pid: int, started: float | None) -> bool:
    try:
        process = psutil.Process(pid)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE and (
            started is None or abs(process.create_time() - started) < 1.0
        )
    except psutil.Error:
        return False


# --------------------------------------------------------------------------------------- database


def airflow_db_url(sitrep_url: str) -> str:
    """The metadata database: SITREP_AIRFLOW_DB_URL, else ``airflow`` beside sitrep's database.

    sitrep's database ``sitrep`` gets the neighbour ``airflow``; any other name ``X`` gets ``X_airflow``
    (so that test databases on one server never share a metadata database).
    """
    explicit = os.environ.get("SITREP_AIRFLOW_DB_URL")
    if explicit:
        return explicit
    parts = urlsplit(sitrep_url.replace("postgres://", "postgresql://", 1))
    name = parts.path.lstrip("/") or "sitrep"
    airflow_name = "airflow" if name == "sitrep" else f"{name}_airflow"
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2", path=f"/{airflow_name}"))


def _ensure_airflow_database(sitrep_url: str, url: str) -> None:
    """Create the metadata database on sitrep's server when it is ours to create."""
    from sitrep import db

    if os.environ.get("SITREP_AIRFLOW_DB_URL") or os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return  # a database the user chose: theirs to create
    try:
        db._create_database(sitrep_url, urlsplit(url).path.lstrip("/"))
    except Exception as exc:
        raise SitrepError(
            f"can't create Airflow's metadata database {db._redact(url)}: {exc}; create it yourself "
            "or set SITREP_AIRFLOW_DB_URL to a PostgreSQL database Airflow may use"
        ) from exc


# ------------------------------------------------------------------------------------ environment


def _choose_port(settings: Settings) -> int:
    raw = os.environ.get("SITREP_AIRFLOW_PORT", "").strip()
    if raw:
        port = port_number(raw)  # 70000 was an OverflowError traceback
        if port is None:
            raise SitrepError(f"SITREP_AIRFLOW_PORT={raw!r} is not a port number: set it to e.g. 8080")
        if not port_is_free(port):
            raise SitrepError(f"port {port} on 127.0.0.1 is taken: free it or set SITREP_AIRFLOW_PORT to another")
        return port
    try:  # the port of the last start, so that a bookmarked UI keeps working
        previous = int((_home(settings) / "port").read_text().strip())
    except (OSError, ValueError):
        previous = 0
    if previous and port_is_free(previous):
        return previous
    return free_port()


def component_env(settings: Settings, sitrep_url: str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every component shares: Postgres metadata, LocalExecutor, loopback, secrets."""
    from sitrep.runner import airflow_env

    home = _home(settings)
    keys = _private_json(home / "secrets.json", {
        "jwt_secret": secrets.token_urlsafe(32), "api_secret_key": secrets.token_urlsafe(32),
    })
    base = f"http://127.0.0.1:{port}"
    chosen = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db_url(sitrep_url),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(int(number_setting("AIRFLOW_PARALLELISM", 2 * (os.cpu_count() or 1), int,
                                                             positive=True))),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"{base}/",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }
    env = airflow_env(settings, sitrep_url, extra)
    for key, value in chosen.items():  # the user's own AIRFLOW__* win (the log ports are free ones)
        env[key] = value if key.startswith("AIRFLOW__LOGGING__") else os.environ.get(key, value)
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------- actions


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def _migrate(env: dict[str, str], log_dir: Path) -> None:
    """``airflow db migrate`` on the Postgres metadata database (idempotent; also upgrades it)."""
    with open(log_dir / "db-migrate.log", "wb") as out:
        result = subprocess.run(_airflow("db", "migrate"), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=600)
    if result.returncode != 0:
        tail = (log_dir / "db-migrate.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise SitrepError(f"can't migrate Airflow's metadata database: {' / '.join(tail)} "
                          f"(full log: {log_dir / 'db-migrate.log'})")


def health(url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The api-server's /api/v2/monitor/health JSON, or None while it does not answer."""
    try:
        response = httpx.get(f"{url}/api/v2/monitor/health", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return dict(response.json())
    except ValueError:
        return None


def _healthy(report: dict[str, Any] | None) -> bool:
    if not report:
        return False
    parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    return all((report.get(part) or {}).get("status") == "healthy" for part in parts)


def start(settings: Settings, *, extra_env: dict[str, str] | None = None,
          timeout: float = DEFAULT_START_TIMEOUT) -> LocalAirflow:
    """Start the components in the background and wait until every one reports healthy."""
    from sitrep import db

    running = _read_state(settings)
    if running and all(running.alive().values()):
        return running
    if running:
        stop(settings)
    port = _choose_port(settings)
    sitrep_url = db.database_url(settings, start=True)
    with db.connect(sitrep_url, statement_timeout_ms=settings.statement_timeout_ms) as conn:
        db.migrate(conn)
    env = component_env(settings, sitrep_url, port, extra_env)
    _ensure_airflow_database(sitrep_url, env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    password_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    _private_json(password_file, {USERNAME: secrets.token_urlsafe(12)})
    log_dir = _home(settings) / "logs" / "local"
    log_dir.mkdir(parents=True, exist_ok=True)
    (_home(settings) / "port").write_text(f"{port}\n")
    _migrate(env, log_dir)

    state = LocalAirflow(url=f"http://127.0.0.1:{port}", port=port, username=USERNAME,
                         password_file=str(password_file))
    try:
        for name in COMPONENTS:
            with open(log_dir / f"{name}.log", "ab") as out:
                process = subprocess.Popen(
                    _airflow(name), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, cwd=str(_home(settings)),
                )
            state.pids[name] = process.pid
            state.started[name] = psutil.Process(process.pid).create_time()
            _state_file(settings).write_text(json.dumps(asdict(state), indent=2) + "\n")
        _wait_healthy(state, log_dir, timeout)
    except BaseException:
        stop(settings)
        raise
    return state


def _wait_healthy(state: LocalAirflow, log_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    report = None
    while time.monotonic() < deadline:
        dead = [name for name, ok in state.alive().items() if not ok]
        if dead:
            tail = (log_dir / f"{dead[0]}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise SitrepError(f"Airflow's {dead[0]} exited during start-up: {' / '.join(tail)} "
                              f"(log: {log_dir / (dead[0] + '.log')})")
        report = health(state.url)
        if _healthy(report):
            return
        time.sleep(1.0)
    raise SitrepError(f"Airflow did not report healthy within {timeout:.0f}s (last health: {report}); "
                      f"see the logs in {log_dir}")


def stop(settings: Settings, *, grace: float = _STOP_GRACE) -> list[str]:
    """End every recorded component and its children (SIGTERM, then SIGKILL); return the names stopped."""
    state = _read_state(settings)
    if state is None:
        return []
    stopped: list[str] = []
    groups: list[int] = []
    for name, pid in reversed(list(state.pids.items())):
        if not _is_ours(pid, state.started.get(name)):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)  # each component leads its own session: its workers go too
            groups.append(pid)
            stopped.append(name)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = [g for g in groups if _group_alive(g)]
        time.sleep(0.2)
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name, pid in state.pids.items():  # reaped here when this process started them (as the tests do)
        if name in stopped:
            try:
                psutil.Process(pid).wait(timeout=5)
            except (psutil.Error, ChildProcessError):
                pass
    _state_file(settings).unlink(missing_ok=True)
    return stopped


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group whose only members are zombies is as good as gone.
    members = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]
    return any(_alive(p) for p in members)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def status(settings: Settings) -> tuple[LocalAirflow | None, dict[str, Any] | None]:
    state = _read_state(settings)
    return state, (health(state.url) if state else None)


# -------------------------------------------------------------------------------------------- CLI


def _print_started(state: LocalAirflow) -> None:
    table = Table(title="Airflow is running on this machine")
    table.add_column("")
    table.add_column("", overflow="fold")
    table.add_row("UI", state.url)
    table.add_row("login", f"{state.username} / {state.password}")
    table.add_row("password file", state.password_file)
    table.add_row("processes", ", ".join(f"{name} ({pid})" for name, pid in state.pids.items()))
    console.print(table)
    console.print("`make down` (or `sitrep airflow stop`) stops it.")


def cmd_airflow(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.action == "start":
        with console.status("starting Airflow (migrating its database, then four components)..."):
            state = start(settings, timeout=args.timeout)
        _print_started(state)
        return 0
    if args.action == "stop":
        stopped = stop(settings)
        console.print(f"Stopped Airflow ({', '.join(stopped)})." if stopped else "Airflow was not running.")
        return 0
    running, report = status(settings)
    if running is None:
        console.print("Airflow is not running: `make airflow` starts it.")
        return 1
    table = Table(title=f"Airflow at {running.url}")
    for col in ("component", "pid", "process", "health"):
        table.add_column(col)
    alive = running.alive()
    names = {"api-server": "metadatabase", "scheduler": "scheduler", "dag-processor": "dag_processor",
             "triggerer": "triggerer"}
    for name, pid in running.pids.items():
        part = (report or {}).get(names[name]) or {}
        table.add_row(name, str(pid), "running" if alive[name] else "gone", str(part.get("status", "-")))
    console.print(table)
    return 0 if all(alive.values()) and _healthy(report) else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "airflow", help="Airflow 3 with its UI on this machine: start (default), stop, status",
        description="Run Airflow's api-server, scheduler, dag-processor and triggerer in the background "
                    "against dags/, with a PostgreSQL metadata database; prints the UI address and login.",
    )
    p.add_argument("action", nargs="?", default="start", choices=["start", "stop", "status"])
    p.add_argument("--timeout", type=number(float, 1, 86_400), default=DEFAULT_START_TIMEOUT, metavar="SECONDS",
                   help=f"how long start waits for every component to be healthy (default {DEFAULT_START_TIMEOUT:.0f})")
    p.set_defaults(func=cmd_airflow)
