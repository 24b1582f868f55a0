"""Running sitrep's DAGs through Airflow on one machine, with no set-up by hand.

``sitrep ingest`` (and the demo and the tests) run the real DAG with ``dag.test()`` in a child
process, against an Airflow metadata database (SQLite) under ``.sitrep/airflow`` that is migrated on
first use. The child's output goes to a log file; the parent shows progress from Postgres.

Run as a module, it is that child: ``python -m sitrep.runner DAG_ID [--conf JSON]``.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from sitrep.errors import SitrepError
from sitrep.settings import PROJECT_ROOT, Settings

__all__ = ["DagRun", "airflow_env", "ensure_airflow_db", "start_dag"]


def airflow_env(settings: Settings, database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment in which Airflow finds our DAGs, its own metadata DB and sitrep's database."""
    home = settings.home / "airflow"
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=env.get(
            "SITREP_AIRFLOW_DB_URL", f"sqlite:///{home / 'airflow.db'}"
        ),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        SITREP_DATABASE_URL=database_url,
        SITREP_HOME=str(settings.home),
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT / "plugins"), env.get("PYTHONPATH")])),
    )
    env.update(extra or {})
    return env


def ensure_airflow_db(settings: Settings, env: dict[str, str]) -> None:
    """Migrate Airflow's metadata database once (about 6 s), under a lock for concurrent callers."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    marker = home / f".migrated-{version('apache-airflow')}"
    with open(home / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise SitrepError(f"can't migrate Airflow's metadata database in {home}: {' / '.join(tail)}")
        marker.touch()


@dataclass
class DagRun:
    """A DAG run in a child process; ``wait()`` returns True when the run succeeded."""

    dag_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> bool:
        return self.process.wait(timeout) == 0

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_dag(settings: Settings, database_url: str, dag_id: str, conf: dict[str, Any] | None = None,
              extra_env: dict[str, str] | None = None) -> DagRun:
    """Start ``dag.test()`` of one DAG in a child process, its output in a log file."""
    env = airflow_env(settings, database_url, extra_env)
    ensure_airflow_db(settings, env)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # A log per run (two runs at once each keep theirs), the last _KEEP_LOGS of each DAG kept.
    log_path = logs / f"{dag_id}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    for old in sorted(logs.glob(f"{dag_id}-*.log"))[:-_KEEP_LOGS]:
        old.unlink(missing_ok=True)
    with open(log_path, "wb") as out:
        process = child_process([sys.executable, "-m", "sitrep.runner", dag_id, "--conf", json.dumps(conf or {})],
                                env=env, stdout=out)
    return DagRun(dag_id=dag_id, process=process, log_path=log_path)


#: Logs of earlier runs kept per DAG under <home>/logs.
_KEEP_LOGS = 20


def child_process(argv: list[str], *, env: dict[str, str], stdout: IO[bytes]) -> subprocess.Popen[bytes]:
    """A child that ends with us: SIGTERM when the process that started it dies (Linux's parent-death
    signal), so a `sitrep ingest` stopped by SIGTERM or SIGKILL leaves no DAG run going on alone."""
    return subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)  # noqa: PLW1509 - one prctl call, looked up before the fork


def _die_with_parent() -> None:
    if _PRCTL is not None:  # not Linux: the child outlives an interrupted parent, as before
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up here, in the parent: the forked child (other threads' locks copied, held)
    only calls it, nothing that could allocate or take a lock."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


#: DAGs whose tasks extract pages in sitrep.workers: the child starts the workers' forkserver first.
_EXTRACTING_DAGS = frozenset({"sitrep_ingest"})


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sitrep.runner", description="Run one DAG with dag.test().")
    parser.add_argument("dag_id")
    parser.add_argument("--conf", default="{}", help="run conf as JSON")
    args = parser.parse_args(argv)
    if args.dag_id in _EXTRACTING_DAGS:
        from sitrep.workers import start_forkserver

        start_forkserver()  # its warm-up runs on the core that Airflow's start-up leaves idle
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        for path, error in bag.import_errors.items():
            print(f"import error in {path}: {error}", file=sys.stderr)
        return 2
    dag = bag.get_dag(args.dag_id)
    if dag is None:
        print(f"no DAG {args.dag_id!r} in {bag.dag_folder}", file=sys.stderr)
        return 2
    run = dag.test(run_conf=json.loads(args.conf))
    state = str(getattr(run, "state", "unknown"))
    print(f"SITREP_DAG_RUN_STATE={state}")
    return 0 if state.endswith("success") else 1


def _exit_now(code: int) -> NoReturn:
    """Exit as the interpreter would, less its teardown of the heap that Airflow leaves behind.

    That teardown takes about 3 s after every run (a run with no feeds: 17.8-20.3 s of wall time,
    15.6-16.0 s with this), and does nothing we need: what an exit must do still happens here, in the same order
    (other threads joined, atexit handlers: logging's flush, multiprocessing's clean-up, Airflow's).
    """
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(_child())
