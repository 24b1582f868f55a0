"""Trials of the chaos suite: run ingestion, break it (SIGKILL, a database restart), retry, count.

A trial works on a fresh database cloned from a migrated template, with the offline demo corpus
(seeds/demo) served on loopback. Its verdict compares what the retried run left behind with what one
undisturbed run leaves (the reference, measured once per suite):

- lost: reference reports missing after the retry, plus announced entries the retry left open
  (pending, or failed where the reference loaded them);
- duplicated: reports beyond the reference's (the same article under a second report), plus staged
  rows never merged.

Nothing here is mocked: real processes are killed with SIGKILL, the real PostgreSQL is stopped with
``pg_ctl stop -m fast`` (every session cut) and started again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from sitrep import db, sources
from sitrep.settings import PROJECT_ROOT

#: The settings every ingestion process of the suite runs with (loopback only, no politeness delay).
CHILD_ENV = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_PER_HOST_CONCURRENCY": "8",
             "SITREP_RETRIES": "1", "SITREP_WORKERS": "2", "SITREP_BATCH_SOURCES": "3"}
TEMPLATE = "chaos_template"
_RUN_TIMEOUT = 240.0


# ---------------------------------------------------------------------------------------- database


@dataclass
class Cluster:
    """A private embedded PostgreSQL with a migrated template; ``fresh()`` clones a database from it."""

    server: db.EmbeddedPostgres

    @classmethod
    def start(cls, root: Path) -> Cluster:
        server = db.EmbeddedPostgres(root)
        with db.connect(server.start(TEMPLATE)) as conn:
            db.migrate(conn)
        return cls(server)

    def fresh(self) -> str:
        name = f"chaos_{uuid.uuid4().hex[:10]}"
        db._create_database(self.server.url("postgres"), name, template=TEMPLATE)
        return self.server.url(name)

    def restart_url(self, url: str) -> str:
        """The same database on the server's current port (a restart may move it)."""
        return self.server.url(url.rsplit("/", 1)[1])


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="sitrep-chaos-") as tmp:
        cluster = Cluster.start(Path(tmp) / "pg")
        try:
            yield cluster
        finally:
            cluster.server.stop()


def add_demo_feeds(url: str, feed_urls: list[str]) -> None:
    with db.connect(url) as conn:
        sources.add_feeds(conn, [sources.FeedSpec(url=u, name=f"demo {i}") for i, u in enumerate(feed_urls)])
        conn.commit()


# ------------------------------------------------------------------------------------------ outcome


@dataclass(frozen=True)
class Snapshot:
    """What a run left behind, keyed so that two databases compare (no ids, no times)."""

    reports: dict[str, str]  # canonical_url -> content_sha256
    entries: dict[tuple[str, str], str]  # (feed_url, entry_key) -> status
    staged: int
    report_rows: int

    @classmethod
    def take(cls, url: str) -> Snapshot:
        with psycopg.connect(url) as conn:
            reports = dict(conn.execute("SELECT canonical_url, content_sha256 FROM reports").fetchall())
            entries = {(f, k): s for f, k, s in conn.execute(
                "SELECT s.feed_url, e.entry_key, e.status FROM entries e JOIN sources s USING (source_id)")}
            staged = conn.execute("SELECT count(*) FROM staged_reports").fetchone()
            rows = conn.execute("SELECT count(*) FROM reports").fetchone()
        return cls(reports=reports, entries=entries, staged=int(staged[0]) if staged else 0,
                   report_rows=int(rows[0]) if rows else 0)

    def lost(self, reference: Snapshot) -> int:
        missing = reference.reports.keys() - self.reports.keys()
        closed = {"loaded", "duplicate"}
        unclosed = sum(1 for key, status in reference.entries.items()
                       if status in closed and self.entries.get(key) not in closed)
        return len(missing) + unclosed

    def duplicated(self, reference: Snapshot) -> int:
        return self.report_rows - len(self.reports.keys() & reference.reports.keys()) + self.staged


# ------------------------------------------------------------------------------------------- trials


@dataclass
class Trial:
    name: str
    fault: str
    injected: bool = False
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    attempts: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.injected and self.lost == 0 and self.duplicated == 0


def child_env(url: str, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("SITREP_CHAOS_")]:
        del env[key]
    env.update(CHILD_ENV)
    env.update(SITREP_DATABASE_URL=url, SITREP_HOME=str(home),
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    env.update(extra or {})
    return env


@dataclass
class Ingestion:
    """One ingestion child process (its own process group, so a SIGKILL takes its workers too)."""

    process: subprocess.Popen[str]
    log: Path

    @classmethod
    def start(cls, url: str, home: Path, extra: dict[str, str] | None = None) -> Ingestion:
        home.mkdir(parents=True, exist_ok=True)
        log = home / f"child-{uuid.uuid4().hex[:8]}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.child", "--mode", "all"], cwd=PROJECT_ROOT,
                env=child_env(url, home, extra), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, start_new_session=True,
            )
        return cls(process, log)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, marker: str, timeout: float = _RUN_TIMEOUT) -> bool:
        """Wait until the child printed ``marker`` (True) or ended without it (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.output():
                return True
            if self.process.poll() is not None:
                return marker in self.output()
            time.sleep(0.02)
        return False

    def kill(self) -> bool:
        """SIGKILL the child's process group; True when it was still running."""
        if self.process.poll() is not None:
            return False
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        return True

    def wait(self, timeout: float = _RUN_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"ingestion child did not finish in {timeout:.0f}s; log: {self.log}") from None

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def run_clean(url: str, home: Path) -> float:
    """One undisturbed run (the reference, or a retry); returns its duration."""
    started = time.monotonic()
    child = Ingestion.start(url, home)
    code = child.wait()
    if code != 0:
        raise RuntimeError(f"ingestion run failed (exit {code}):\n{child.tail()}")
    return time.monotonic() - started


def _retry(trial: Trial, url: str, home: Path, reference: Snapshot) -> Trial:
    """Airflow's retry: run again until it succeeds (at most 3 tries), then compare with the reference."""
    for _ in range(3):
        trial.attempts += 1
        child = Ingestion.start(url, home)
        if child.wait() == 0:
            break
        trial.notes.append(f"retry failed: {child.tail(3)}")
    after = Snapshot.take(url)
    trial.expected = len(reference.reports)
    trial.lost, trial.duplicated = after.lost(reference), after.duplicated(reference)
    return trial


def kill_trial(url: str, home: Path, reference: Snapshot, *, stage: str | None, delay: float,
               name: str) -> Trial:
    """SIGKILL an ingestion run at ``stage`` (+``delay`` s; stage None: ``delay`` s after start), retry."""
    started = time.monotonic()
    trial = Trial(name=name, fault=f"SIGKILL at {stage or 'random time'}" + (f" +{delay:.2f}s" if delay else ""))
    extra = {"SITREP_CHAOS_KILL_AT": stage, "SITREP_CHAOS_KILL_DELAY": f"{delay:.3f}"} if stage else {}
    child = Ingestion.start(url, home, extra)
    if stage is None:
        try:
            child.wait(delay)
        except RuntimeError:
            pass
        killed = child.process.returncode == -signal.SIGKILL
    else:
        child.wait()
        killed = child.process.returncode == -signal.SIGKILL
    trial.injected = killed
    if not killed:
        trial.notes.append(f"the run ended (exit {child.process.returncode}) before the kill")
    _retry(trial, url, home, reference)
    trial.seconds = time.monotonic() - started
    return trial


def _wait_child(child: Ingestion, seconds: float) -> None:
    try:
        child.process.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


def restart_trial(cluster: Cluster, url: str, home: Path, reference: Snapshot, *, name: str = "db-restart",
                  down_for: float = 1.5) -> Trial:
    """Stop PostgreSQL while a run is inside its load transaction; the task fails; the retry, started
    while the server is still down, gets through on db.connect's backoff and completes the load."""
    started = time.monotonic()
    trial = Trial(name=name, fault="PostgreSQL stopped during load, started again")
    child = Ingestion.start(url, home, {"SITREP_CHAOS_PAUSE_AT": "load", "SITREP_CHAOS_PAUSE": "5"})
    if not child.wait_for("CHAOS stage=load"):
        trial.notes.append(f"the run never reached the load: {child.tail(3)}")
    cluster.server.stop()  # pg_ctl stop -m fast: the loader's session is cut mid-transaction
    code = child.wait()
    trial.injected = code != 0
    if code == 0:
        trial.notes.append("the run survived the restart (no task failure to retry)")
    retry = Ingestion.start(url, home)  # Airflow's retry, while the server is still down
    _wait_child(retry, down_for)
    cluster.server.start()
    url = cluster.restart_url(url)
    if retry.wait() != 0:
        trial.notes.append(f"the retry did not outlast the restart: {retry.tail(3)}")
    trial.attempts = 1
    _retry(trial, url, home, reference)  # and a final run, as the next schedule would
    trial.seconds = time.monotonic() - started
    return trial


def dag_trial(url: str, home: Path, reference: Snapshot, rng: random.Random) -> Trial:
    """The real DAG (dag.test() through sitrep.runner.start_dag), SIGKILLed from outside once it started
    collecting pages; then the DAG run again (Airflow's retry of the run)."""
    from sitrep import runner
    from sitrep.settings import Settings

    started = time.monotonic()
    trial = Trial(name="dag", fault="SIGKILL of dag.test() during collect")
    settings = Settings(database_url=url, home=home)
    run = runner.start_dag(settings, url, "sitrep_ingest", {"mode": "all"}, CHILD_ENV)
    deadline = time.monotonic() + _RUN_TIMEOUT
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and run.poll() is None:
            row = conn.execute("SELECT count(*) FROM entries").fetchone()
            if row and row[0] > 0:
                break
            time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    if run.poll() is None:
        run.process.kill()
        run.process.wait(30)
        trial.injected = True
    else:
        trial.notes.append(f"the DAG run ended before the kill: {run.tail(3)}")
    for _ in range(2):
        trial.attempts += 1
        again = runner.start_dag(settings, url, "sitrep_ingest", {"mode": "all"}, CHILD_ENV)
        if again.wait(_RUN_TIMEOUT):
            break
        trial.notes.append(f"DAG retry failed: {again.tail(3)}")
    after = Snapshot.take(url)
    trial.expected = len(reference.reports)
    trial.lost, trial.duplicated = after.lost(reference), after.duplicated(reference)
    trial.seconds = time.monotonic() - started
    return trial
