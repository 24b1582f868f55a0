"""End to end: the real ingestion DAG against bare trafilatura, on the same pages and the same cores.

For each corpus size (1k and 5k pages; 20k with --full):

- ceiling: bare ``trafilatura.extract`` over the pages read from disk, in a process pool of one
  worker per core (what a user gets by running trafilatura by hand), measured before and after the
  pipeline's run: the ratios are against the mean, and "after / before" shows how far the machine
  drifted meanwhile;
- pipeline: feeds polled, pages fetched over loopback HTTP, extracted, normalized, deduplicated,
  enriched and loaded into Postgres, through the real DAG (``dag.test()`` in a child process, Airflow's
  start-up included), and its ratio to the ceiling;
- the same over the tasks' own time only (first task start to last task end, from the
  ``task_stage_log`` rows the tasks write): the difference is Airflow's fixed start-up (importing
  Airflow, parsing the DAG folder, the in-process execution API), 15-20 s of wall time and
  15-19 s of CPU per run whatever the size;
- one process, the same pages (the first corpus's first 200): CPU per page of bare
  ``trafilatura.extract`` against sitrep's whole worker path, and how many times one process's rate
  the ceiling gets from all the cores: the budget the rest of the pipeline shares;
- each stage's cost per page and share: CPU seconds for fetch (the fetch threads) and extract, enrich,
  dedup (the worker processes), wall seconds for poll, stage (the staging thread) and load. They run
  at the same time, so they do not add up to the wall time: the largest one is the bottleneck;
- where the cores go: CPU per page of the DAG process (Airflow, the fetch threads, staging, handing
  pages to the workers), the extraction workers, PostgreSQL and the loopback web server that stands in
  for the web, against the capacity (cores x wall time): what is left to cut besides extraction;
- the run's phases (Airflow's start-up, poll, collect, load, shut-down): wall seconds and how busy the
  whole machine was meanwhile, beside the time the ceiling takes for the same pages: a phase that
  leaves cores idle shows here;
- the peak memory of the run: the proportional set size (PSS) of the DAG run's process tree and
  PostgreSQL's, summed (RSS would count the pages the workers share with their forkserver once per
  worker; the loopback web server, standing in for the web, is not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import psycopg
from rich.table import Table

from bench import step
from bench._pagegen import Corpus, build_corpus

if TYPE_CHECKING:
    from sitrep.runner import DagRun

TITLE = "End to end: the ingestion DAG vs bare trafilatura.extract"
ORDER = 10


def _bare(path: str) -> int:
    import trafilatura

    with open(path, "rb") as handle:
        text = trafilatura.extract(handle.read())
    return len(text.split()) if text else 0


def ceiling(corpus: Corpus) -> float:
    """Pages per second of bare trafilatura.extract (defaults) using every core."""
    paths = [str(p) for p in corpus.pages]
    for path in corpus.pages:  # into the page cache first: the ceiling is extraction, not the disk
        path.read_bytes()
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_bare, paths[: workers * 2], chunksize=1))  # warm the workers' imports
        started = time.perf_counter()
        list(pool.map(_bare, paths, chunksize=8))
        return len(paths) / (time.perf_counter() - started)


def one_process(corpus: Corpus, sample: int = 200, rounds: int = 5) -> dict[str, float]:
    """CPU ms per page in this one process, on the same pages: bare ``trafilatura.extract`` (the ceiling's
    call) and sitrep's whole worker path (``pipeline.build_report``: extraction, metadata, normalization,
    enrichment, LSH keys), page by page in turn; the ratio is the median of the rounds' ratios.

    Beside the ceiling it says two things the end-to-end ratio cannot: whether a page costs the workers
    more than bare extraction does, and how much more than one core all the cores give (on a VM whose vCPUs
    share physical cores, much less than their number): what is left for fetching, staging, Airflow,
    PostgreSQL and the web server is the difference.
    """
    from datetime import UTC, datetime

    from sitrep.pipeline import build_report
    from sitrep.records import PageJob, Rejected

    paths = corpus.pages[:sample]
    fetched = datetime.now(UTC)
    jobs = []
    for path in paths:
        url = f"http://127.0.0.1/{path.relative_to(corpus.root).as_posix()}"
        jobs.append(PageJob(entry_id=len(jobs), source_id=1, url=url, final_url=url, body=path.read_bytes(),
                            fetched_at=fetched))
    for path, job in zip(paths[:20], jobs[:20], strict=True):  # imports, the gazetteer, lexicons: not per page
        _bare(str(path))
        build_report(job)
    bare, ours, rejected = [], [], 0
    clock = time.process_time
    for _ in range(rounds):
        # Page by page, one path then the other: a VM whose speed drifts by the second bends both alike.
        spent, rejected = [0.0, 0.0], 0  # rejections counted too: a failure path would pass for a fast one
        for path, job in zip(paths, jobs, strict=True):
            started = clock()
            _bare(str(path))
            middle = clock()
            result = build_report(job)
            spent[0] += middle - started
            spent[1] += clock() - middle
            rejected += isinstance(result, Rejected)
        bare.append(spent[0] * 1000 / len(paths))
        ours.append(spent[1] * 1000 / len(jobs))
    return {"pages": float(len(paths)), "rejected": float(rejected),
            "bare": statistics.median(bare), "sitrep": statistics.median(ours),
            "ratio": statistics.median(o / b for o, b in zip(ours, bare, strict=True))}


class ProcessMeter:
    """Samples process trees until stopped: the peak summed PSS of the watched trees, and the CPU seconds each
    watched tree spent meanwhile (per process, its last sample less its first; a process that exits loses
    at most one interval, one born since is found within RELIST intervals and counts from zero).

    PostgreSQL's backends come and go with each task's connections, some within a RELIST interval: the
    server's CPU is the postmaster's own and its reaped children's (the kernel adds a child's CPU time
    to its parent's when the parent waits for it), plus that of the children still there at the end."""

    #: The process trees are listed again every this many samples (listing them reads every process's
    #: /proc entry, 7 ms a sample on this VM; the meter's CPU is taken from the cores it measures).
    RELIST = 5

    def __init__(self, run_pid: int, postgres_pid: int, every: float = 0.2):
        self.run_pid, self.postgres_pid, self.every, self.peak = run_pid, postgres_pid, every, 0
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._procs: list[tuple[str, psutil.Process]] = []
        self._samples = 0
        self._opening = True  # the first sample: what is there counts from it, not from zero
        #: (epoch seconds, busy CPU seconds, all CPU seconds) of the whole machine, at every sample
        self.machine: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self, pid: int) -> list[psutil.Process]:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    def _list(self) -> list[tuple[str, psutil.Process]]:
        procs: list[tuple[str, psutil.Process]] = []
        with contextlib.suppress(psutil.Error):
            run = self._tree(self.run_pid)
            procs += [("run", run[0]), *(("workers", p) for p in run[1:])]
        with contextlib.suppress(psutil.Error):
            procs += [("postgres", p) for p in self._tree(self.postgres_pid)]
        return procs

    def _sample(self, *, relist: bool = False) -> None:
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        self.machine.append((time.time(), sum(machine) - idle, sum(machine)))
        if relist or self._samples % self.RELIST == 0:
            self._procs = self._list()
        self._samples += 1
        rss = 0
        for group, proc in self._procs:
            with contextlib.suppress(psutil.Error), proc.oneshot():
                times = proc.cpu_times()
                spent = times.user + times.system
                if proc.pid == self.postgres_pid:
                    spent += times.children_user + times.children_system
                # PSS: a page shared by n processes (the forkserver's warmed heap in every worker,
                # PostgreSQL's shared buffers) counts 1/n in each, so the sum is what the run holds.
                rss += proc.memory_full_info().pss
                # A process already there at the start counts from then; one born since, from zero.
                self._first.setdefault(proc.pid, spent if self._opening else 0.0)
                self._last[proc.pid] = (group, spent)
        self._opening = False
        self.peak = max(self.peak, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def busy(self, start: float, end: float) -> float | None:
        """Share of the machine's CPU capacity in use between two epoch times (None: too short to tell)."""
        inside = [m for m in self.machine if start <= m[0] <= end]
        if len(inside) < 2 or inside[-1][2] == inside[0][2]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2])

    def cpu(self) -> dict[str, float]:
        """CPU seconds by group: run (the DAG process), workers (its children), postgres (the server)."""
        out: dict[str, float] = {}
        listed = {proc.pid for _, proc in self._procs}
        for pid, (group, last) in self._last.items():
            if group == "postgres" and pid != self.postgres_pid and pid not in listed:
                continue  # gone: the postmaster reaped it, its CPU is in the postmaster's children's time
            out[group] = out.get(group, 0.0) + last - self._first.get(pid, 0.0)
        return out

    def __enter__(self) -> ProcessMeter:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(relist=True)  # cpu() counts the PostgreSQL children still there at the end


#: Seconds between two counts of the DAG run's progress (bench.step) while it runs.
SAY_EVERY = 10.0


def _wait_saying(run: DagRun, conn: psycopg.Connection, pages: int, timeout: float = 3600) -> bool:
    """Wait for the DAG run, saying how far it got every SAY_EVERY seconds (metrics.progress, as
    `sitrep ingest` shows it: four counts, a few ms of the server's CPU)."""
    from sitrep.metrics import progress

    deadline = time.monotonic() + timeout
    while True:
        try:
            return run.wait(SAY_EVERY)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                raise
        now = progress(conn)
        step(f"{pages} pages: the ingestion DAG through dag.test(): {now.entries} entries polled,"
             f" {now.staged} pages staged, {now.reports} reports loaded")


def run_pipeline(corpus: Corpus, home: Path, url: str) -> dict[str, object]:
    """Serve the corpus on loopback, register its feeds, run the DAG once; return timings and counts."""
    from sitrep import db, demo, runner, sources
    from sitrep.settings import Settings

    settings = Settings(database_url=url, home=home)
    env = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_PER_HOST_CONCURRENCY": "16",
           "SITREP_RESPECT_ROBOTS": "0"}
    with demo.serve_corpus(corpus.root) as sites, db.connect(url) as conn:
        specs = [sources.FeedSpec(url=f"{s.base_url}{feed}", name=s.root.name)
                 for s in sites for feed in corpus.feeds[s.root.name]]
        sources.add_feeds(conn, specs)
        env_all = runner.airflow_env(settings, url, env)
        runner.ensure_airflow_db(settings, env_all)
        postmaster = psutil.Process(int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])).ppid()
        started, web_started, began = time.perf_counter(), time.process_time(), time.time()
        run = runner.start_dag(settings, url, "sitrep_ingest", {"mode": "all"}, env)
        with ProcessMeter(run.process.pid, postmaster) as meter:
            ok = _wait_saying(run, conn, len(corpus.pages))
        wall, ended = time.perf_counter() - started, time.time()
        # This process only serves the corpus (threads of demo.serve_corpus) and samples the others.
        cpu = {**meter.cpu(), "web": time.process_time() - web_started}
        if not ok:
            raise RuntimeError(f"the DAG run failed: {run.log_path}\n{run.tail(40)}")
        loaded = conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM entries WHERE status NOT IN ('loaded', 'duplicate')").fetchone()[0]
        stages = dict(conn.execute("SELECT stage, sum(seconds) FROM task_stage_log GROUP BY stage").fetchall())
        windows = conn.execute(
            "SELECT task, min(extract(epoch FROM recorded_at) - seconds)::float8, max(extract(epoch FROM recorded_at))::float8"
            " FROM task_stage_log WHERE stage = 'task' GROUP BY task ORDER BY 2"
        ).fetchall()
    # The tasks' own time: from the first task's start to the last one's end (task_stage_log, per task kind).
    span = max(end for _, _, end in windows) - min(start for _, start, _ in windows) if windows else wall
    return {"wall": wall, "tasks": span, "pages": loaded, "failed": failed, "peak_memory": meter.peak,
            "stages": stages, "cpu": cpu, "phases": _phases(meter, began, ended, windows)}


def _phases(meter: ProcessMeter, began: float, ended: float,
            windows: list[tuple[str, float, float]]) -> list[tuple[str, float, float | None]]:
    """(phase, wall seconds, machine busy share) from the run's start to its end: Airflow's start-up, each
    task kind (dag.test() runs the mapped tasks one after another, so they do not overlap), what follows."""
    marks = [("start-up", began, windows[0][1] if windows else ended)]
    marks += [(task, start, end) for task, start, end in windows]
    marks.append(("shut-down", windows[-1][2] if windows else ended, ended))
    return [(name, max(0.0, end - start), meter.busy(start, end)) for name, start, end in marks]


def run(args: argparse.Namespace) -> list[Table]:
    from sitrep import db

    sizes = [1000, 5000] + ([20000] if args.full else [])
    summary = Table(title="pipeline vs ceiling (pages/s; same pages, same cores)")
    for col in ("pages", "ceiling pages/s", "ceiling after / before", "DAG run pages/s", "ratio", "tasks pages/s",
                "ratio (tasks)", "ms/page (tasks)", "failed", "peak PSS MB"):
        summary.add_column(col, justify="right")
    shares = Table(title="ms per page by stage (CPU: fetch, extract, enrich, dedup; wall: poll, stage, load)"
                         " and share of their sum (CPU and wall added: a rough share)")
    shares.add_column("pages", justify="right")
    stage_names = ["poll", "fetch", "extract", "enrich", "dedup", "stage", "load"]
    for name in stage_names:
        shares.add_column(name, justify="right")
    cores = os.cpu_count() or 1
    budget = Table(title=f"where the {cores} cores go: CPU ms per page by process over the whole DAG run")
    for col in ("pages", "DAG process (Airflow, fetch, staging)", "extraction workers", "PostgreSQL",
                "loopback web server", "sum", f"capacity ({cores} cores x wall)", "busy"):
        budget.add_column(col, justify="right")
    groups = ["run", "workers", "postgres", "web"]
    phase_names = ["start-up", "poll", "collect", "load", "shut-down"]
    timeline = Table(title="the run's phases: wall seconds and how busy the machine was (all cores)")
    timeline.add_column("pages", justify="right")
    for name in [*phase_names, "between tasks", "the ceiling's time for these pages"]:
        timeline.add_column(name, justify="right")
    single = Table(title="one process, the same pages: CPU ms per page of sitrep's worker path vs bare"
                         " trafilatura.extract, and what all the cores give over one")
    for col in ("pages", "bare trafilatura.extract ms/page", "sitrep worker path ms/page", "ratio",
                "ceiling pages/s (all cores)", "one process pages/s (bare, from its CPU time)", "all cores / one"):
        single.add_column(col, justify="right")
    costs: list[tuple[int, float, float]] = []  # (pages, tasks ms per page, ceiling pages/s)
    with tempfile.TemporaryDirectory(prefix="sitrep-bench-") as tmp:
        server = db.EmbeddedPostgres(Path(tmp) / "pg")
        try:
            base = server.start("postgres")
            for size in sizes:
                step(f"{size} pages: the corpus (generated once, kept under bench/out)")
                corpus = build_corpus(size)
                step(f"{size} pages: the ceiling (bare trafilatura.extract, all cores)")
                before = ceiling(corpus)
                if not single.row_count:  # per page: the first corpus is enough
                    step("one process: sitrep's worker path vs bare trafilatura.extract")
                    one = one_process(corpus)
                    single.add_row(f"{one['pages']:.0f}", f"{one['bare']:.2f}", f"{one['sitrep']:.2f}",
                                   f"{one['ratio']:.2f}", f"{before:.1f}", f"{1000 / one['bare']:.1f}",
                                   f"{before * one['bare'] / 1000:.2f}")
                dbname = f"bench_{size}"
                db._create_database(base, dbname)
                url = server.url(dbname)
                with db.connect(url) as conn:
                    db.migrate(conn)
                step(f"{size} pages: the ingestion DAG through dag.test()")
                result = run_pipeline(corpus, Path(tmp) / f"home-{size}", url)
                step(f"{size} pages: the ceiling again")
                # Measured on both sides of the run, so that the VM's drift (15-20% here) shows, and the
                # ratio is against the mean of the two.
                after = ceiling(corpus)
                top = (before + after) / 2
                pages = float(result["pages"])  # type: ignore[arg-type]
                rate, task_rate = pages / float(result["wall"]), pages / float(result["tasks"])  # type: ignore[arg-type]
                costs.append((size, 1000 / task_rate, top))
                summary.add_row(str(size), f"{top:.1f}", f"{after / before:.2f}", f"{rate:.1f}", f"{rate / top:.2f}",
                                f"{task_rate:.1f}", f"{task_rate / top:.2f}", f"{1000 / task_rate:.1f}", str(result["failed"]),
                                f"{int(result['peak_memory']) / 2**20:.0f}")  # type: ignore[call-overload]
                stages: dict[str, float] = result["stages"]  # type: ignore[assignment]
                total = sum(stages.get(n, 0.0) for n in stage_names) or 1.0
                shares.add_row(str(size), *(f"{1000 * stages.get(n, 0.0) / max(pages, 1):.1f} "
                                            f"({100 * stages.get(n, 0.0) / total:.0f}%)" for n in stage_names))
                cpu: dict[str, float] = result["cpu"]  # type: ignore[assignment]
                spent, capacity = sum(cpu.get(g, 0.0) for g in groups), cores * float(result["wall"])  # type: ignore[arg-type]
                budget.add_row(str(size), *(f"{1000 * cpu.get(g, 0.0) / max(pages, 1):.1f}" for g in groups),
                               f"{1000 * spent / max(pages, 1):.1f}", f"{1000 * capacity / max(pages, 1):.1f}",
                               f"{100 * spent / capacity:.0f}%")
                phases = {name: (seconds, busy) for name, seconds, busy in result["phases"]}  # type: ignore[attr-defined]
                between = float(result["wall"]) - sum(seconds for seconds, _ in phases.values())  # type: ignore[arg-type]
                timeline.add_row(str(size), *(_phase_cell(*phases.get(name, (0.0, None))) for name in phase_names),
                                 f"{between:.1f} s", f"{pages / top:.1f} s")
        finally:
            server.stop()
    summary.caption = scaling_caption(costs)
    timeline.caption = ("dag.test() runs the mapped tasks one after another; a deployment's executor runs them side"
                        " by side. Busy: CPU time of every process on the machine over cores x the phase's wall time")
    single.caption = ("sitrep's worker path: extraction (fast mode), metadata, normalization, enrichment and LSH"
                      " keys, as build_report runs it in the workers; the two paths take turns page by page;"
                      " medians of five rounds. Bare extract runs trafilatura's defaults (the ceiling's);"
                      " the worker path fast=True, favor_precision=True (sitrep's defaults)")
    shares.caption = ("dedup here is the workers' LSH keys; the exact and near-duplicate checks against stored"
                      " reports run inside load")
    return [summary, single, shares, budget, timeline]


def scaling_caption(costs: list[tuple[int, float, float]]) -> str:
    """Per-report cost of each size against the smallest's: tasks ms per page, and the same in units of
    the ceiling measured with each size (this VM drifts 15-30% between phases of one run; the second
    takes that out)."""
    if len(costs) < 2:
        return ""
    (first, ms_first, top_first), *rest = costs
    return f"per-report cost (tasks) against {first} pages: " + "; ".join(
        f"{size}: {ms / ms_first:.2f}x in ms per page, {ms * top / (ms_first * top_first):.2f}x against the ceiling"
        for size, ms, top in rest)


def _phase_cell(seconds: float, busy: float | None) -> str:
    return f"{seconds:.1f} s" + (f" ({100 * busy:.0f}%)" if busy is not None else "")
