"""Extraction in worker processes that can be killed: a per-page deadline and a memory cap.

``trafilatura.extract()`` has no timeout of its own, and pathological pages (deep nesting, megabytes
in one paragraph, broken encodings) can hang it or exhaust memory. A ``ProcessPoolExecutor`` cannot
help there: a stuck task holds its worker forever and a dead worker breaks the whole pool. So this
module keeps its own small pool:

    parent                                     worker (forkserver child, one page at a time)
      send (index, job)  ───────────────────►  RLIMIT_AS = baseline + memory budget
      wait(result pipes, sentinels, deadline)  alarm(deadline + grace): dies even if stuck in C
      ◄────────────────────  (index, result)   build_report(job) -> Report | Rejected
      deadline passed: SIGKILL the worker, record Rejected("... timed out ..."), start a new one
      worker died (OOM, segfault): record Rejected("... worker died ..."), start a new one

A page that times out or kills its worker becomes a ``Rejected`` with the reason, recorded on its
entry like any other failure; the rest of the batch goes on. Results come back in the jobs' order.

Limits come from the environment (documented defaults):

    SITREP_EXTRACT_TIMEOUT     seconds one page may take in a worker (default 30)
    SITREP_WORKER_MEMORY_MB    address space a worker may grow by above its start (default 1536)
    SITREP_WORKER_START_TIMEOUT  seconds a new worker may take to warm up (default 300)

A new worker warms up (trafilatura, the language model, the gazetteer: its first build of the cache
takes seconds) on a tiny built-in page before it takes a real one, under its own deadline, so the
one-time cost is never charged to a page's timeout.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import multiprocessing.forkserver
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from sitrep import metrics
from sitrep.errors import ExtractionError
from sitrep.records import PageJob, Rejected, Report
from sitrep.settings import ExtractSettings, number_setting

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT", "PageStream", "WorkerLimits", "run_pages", "start_forkserver"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY_MB = 1536
DEFAULT_START_TIMEOUT = 300.0
#: A worker says it is warm and ready for pages with this message.
_READY = "ready"
#: Workers that fail to start, per pool slot, before the batch gives up (and Airflow retries it).
_MAX_START_FAILURES = 3
_WARM_UP_HTML = ("<html><head><title>Warm-up</title></head><body><article><h1>Shelling near Kharkiv</h1>"
                 + "".join(f"<p>Officials in Kharkiv said on day {i} that emergency crews worked through night {i} to"
                           f" restore power to district {i}, where shelling damaged {i + 2} buildings.</p>"
                           for i in range(1, 9))
                 + "</article></body></html>").encode()
#: Extra seconds before a worker's own alarm kills it (the parent normally kills it first).
_ALARM_GRACE = 5
_PR_SET_PDEATHSIG = 1

Build = Callable[[PageJob], "Report | Rejected"]


@dataclass(frozen=True)
class WorkerLimits:
    """What one page may cost in a worker: wall-clock seconds and address-space growth in MB."""

    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    start_timeout: float = DEFAULT_START_TIMEOUT

    @classmethod
    def from_env(cls) -> WorkerLimits:
        """The limits, each checked as every setting is: "abc", 0 or -5 fail in one line (they silently
        became the default, so a limit the operator set was not the one in force)."""
        return cls(timeout=number_setting("EXTRACT_TIMEOUT", DEFAULT_TIMEOUT, positive=True),
                   memory_mb=int(number_setting("WORKER_MEMORY_MB", DEFAULT_MEMORY_MB, int, positive=True)),
                   start_timeout=number_setting("WORKER_START_TIMEOUT", DEFAULT_START_TIMEOUT, positive=True))


# ------------------------------------------------------------------------------------------- worker


def _address_space() -> int:
    """This process's current virtual size in bytes (the baseline the memory budget adds to)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _limit_self(limits: WorkerLimits) -> None:
    """Cap the worker's address space, and die with the parent (never an orphan extracting forever)."""
    with contextlib.suppress(OSError, ValueError):
        cap = _address_space() + limits.memory_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm kills, even inside C code


def _warm_up() -> None:
    """Load what the first page would (parsers, models, the gazetteer cache) on a page of our own."""
    from datetime import UTC, datetime

    from sitrep.pipeline import build_report

    url = "http://warm-up.invalid/2024/01/01/warm-up.html"
    try:
        result = build_report(PageJob(entry_id=0, source_id=0, url=url, final_url=url, body=_WARM_UP_HTML,
                                      fetched_at=datetime.now(UTC)))
        if isinstance(result, Rejected):
            log.warning("extraction worker warm-up page was rejected (%s): the first real page pays", result.reason)
    except Exception as exc:  # noqa: BLE001 - the real pages will report the same trouble, each with its URL
        log.warning("extraction worker warm-up failed: %s: %s", type(exc).__name__, exc)


def _worker(conn: Connection, build: Build, limits: WorkerLimits, warm: bool) -> None:
    _limit_self(limits)
    if warm:
        _warm_up()
    try:
        conn.send(_READY)
    except (BrokenPipeError, OSError):
        return
    alarm = int(limits.timeout) + _ALARM_GRACE
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, job = message
        signal.alarm(alarm)
        metrics.PAGE_SECONDS.clear()
        try:
            result = build(job)
        except MemoryError:
            result = Rejected(job.entry_id, job.url, f"extraction of {job.url!r} ran out of memory (worker cap"
                              f" {limits.memory_mb} MB above start, SITREP_WORKER_MEMORY_MB)")
        except Exception as exc:  # noqa: BLE001 - one page's bug must not fail the batch
            result = Rejected(job.entry_id, job.url, f"extraction of {job.url!r} failed: {type(exc).__name__}: {exc}")
        finally:
            signal.alarm(0)
        try:
            conn.send((index, result, dict(metrics.PAGE_SECONDS)))
        except (BrokenPipeError, OSError):
            return
        del job, result, message


# ------------------------------------------------------------------------------------------- parent


@dataclass(eq=False)
class _Slot:
    process: BaseProcess
    conn: Connection
    spawned: float
    ready: bool = False
    index: int | None = None
    started: float = 0.0

    def deadline(self, limits: WorkerLimits) -> float:
        if not self.ready:
            return self.spawned + limits.start_timeout
        return self.started + limits.timeout


#: What the forkserver imports before it forks a worker: the pipeline, warmed up on a page of our own.
_PRELOAD = ["sitrep.pipeline", "sitrep._prewarm"]


def start_forkserver() -> None:
    """Start the workers' forkserver now, without waiting for it: its warm-up (3-4 s of CPU) then runs
    while this process does something else, such as Airflow's start-up on one core. Workers started
    later fork from it warm. (A forkserver lives as long as the process that started it.)"""
    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    multiprocessing.forkserver.ensure_running()


class _Pool:
    """Worker processes, each with its own pipe; a dead or stuck one is killed and replaced."""

    def __init__(self, size: int, build: Build, limits: WorkerLimits, warm: bool) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._build, self._limits, self._warm = build, limits, warm
        self.start_failures = 0
        self.slots = [self._spawn() for _ in range(size)]

    def _spawn(self) -> _Slot:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker, args=(child, self._build, self._limits, self._warm),
                                    daemon=True, name="sitrep-extract")
        process.start()
        child.close()
        return _Slot(process=process, conn=parent, spawned=time.monotonic())

    def replace(self, slot: _Slot) -> None:
        self.kill(slot)
        if not slot.ready:
            self.start_failures += 1
            if self.start_failures > _MAX_START_FAILURES * len(self.slots):
                raise ExtractionError(
                    f"can't start extraction workers: {self.start_failures} died or took longer than"
                    f" {self._limits.start_timeout:g}s (SITREP_WORKER_START_TIMEOUT) to warm up;"
                    " check memory (SITREP_WORKER_MEMORY_MB) and the task log"
                )
        self.slots[self.slots.index(slot)] = self._spawn()

    @staticmethod
    def kill(slot: _Slot) -> None:
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(5)
        slot.conn.close()

    def close(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(OSError):
                if slot.ready and slot.index is None and slot.process.is_alive():
                    slot.conn.send(None)
        deadline = time.monotonic() + 2
        for slot in self.slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            self.kill(slot)


def _lost_page(job: PageJob, slot: _Slot, limits: WorkerLimits, *, timed_out: bool) -> Rejected:
    """The page whose worker died or ran out of time, as a failure with its reason."""
    if timed_out or slot.process.exitcode is None:
        reason = (f"extraction of {job.url!r} timed out after {limits.timeout:g}s (SITREP_EXTRACT_TIMEOUT);"
                  " the worker was killed")
    else:
        code = slot.process.exitcode
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        reason = (f"extraction of {job.url!r} killed its worker ({why}): the page exhausts memory"
                  f" (cap {limits.memory_mb} MB, SITREP_WORKER_MEMORY_MB) or crashes the parser")
    log.info("url=%s %s", job.url, reason)  # the stager's warning names the feed
    return Rejected(job.entry_id, job.url, reason)


class PageStream:
    """Jobs in from any thread, results out in the dispatching thread as they complete.

    The collect step fetches pages in threads and hands each one over as it arrives, so extraction
    starts with the first page instead of after the last one::

        with PageStream(workers, options) as stream:
            # fetch threads: stream.put(job) ... then stream.close_input()
            for job, result, seconds in stream.results():   # CPU seconds per step, from the worker
                ...

    ``results()`` ends when the input is closed and every job has its result. One page's trouble
    never raises (it becomes a Rejected); workers that cannot even start raise ExtractionError.
    """

    def __init__(self, workers: int, options: ExtractSettings | None = None, limits: WorkerLimits | None = None,
                 build: Build | None = None) -> None:
        self.limits = limits or WorkerLimits.from_env()
        warm = build is None or getattr(build, "func", None) is _pipeline_build()
        if build is None:
            build = functools.partial(_pipeline_build(), options=options)
        self._queue: collections.deque[PageJob] = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        # Both ends non-blocking: put() from the thread that also reads results() (run_pages puts a whole
        # batch first) must never wait for a reader; a full buffer already means "wake up".
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._jobs: dict[int, PageJob] = {}
        self._next = 0
        self._pool = _Pool(max(1, workers), build, self.limits, warm)

    def __enter__(self) -> PageStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, job: PageJob) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("PageStream: put() after close_input()")
            self._queue.append(job)
        self._wake()

    def close_input(self) -> None:
        with self._lock:
            self._closed = True
        self._wake()

    def close(self) -> None:
        self.close_input()
        self._pool.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full buffer already means "wake up"
            self._wake_w.send(b"!")

    def _take(self) -> PageJob | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _drained(self) -> bool:
        with self._lock:
            return self._closed and not self._queue

    def results(self) -> Iterator[tuple[PageJob, Report | Rejected, dict[str, float]]]:
        pool, limits = self._pool, self.limits
        while True:
            for slot in pool.slots:
                if slot.ready and slot.index is None:
                    job = self._take()
                    if job is None:
                        break
                    index, self._next = self._next, self._next + 1
                    self._jobs[index] = job
                    try:
                        slot.conn.send((index, job))
                    except (BrokenPipeError, OSError):  # died while idle: a fresh worker takes the page
                        with self._lock:
                            self._queue.appendleft(self._jobs.pop(index))
                        pool.replace(slot)
                        continue
                    slot.index, slot.started = index, time.monotonic()
            watched = [slot for slot in pool.slots if not slot.ready or slot.index is not None]
            if not watched and self._drained():
                return
            timeout = None
            if watched:
                timeout = max(0.0, min(slot.deadline(limits) for slot in watched) - time.monotonic())
            ready = wait([s.conn for s in watched] + [s.process.sentinel for s in watched] + [self._wake_r],
                         timeout=timeout)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)
            for slot in watched:
                if slot.conn in ready:
                    try:
                        message = slot.conn.recv()
                    except (EOFError, OSError):
                        pass  # died while answering: handled as a death below
                    else:
                        if message == _READY:
                            slot.ready = True
                        else:
                            got, result, seconds = message
                            slot.index = None
                            yield self._jobs.pop(got), result, seconds
                        continue
                dead = slot.process.sentinel in ready or not slot.process.is_alive()
                if not dead and time.monotonic() < slot.deadline(limits):
                    continue
                if not dead:
                    slot.process.kill()
                slot.process.join(5)
                if slot.index is not None:
                    job = self._jobs.pop(slot.index)
                    slot.index = None
                    yield job, _lost_page(job, slot, limits, timed_out=not dead), {}
                elif not slot.ready:
                    log.warning("extraction worker did not start (exit code %s); starting another",
                                slot.process.exitcode)
                pool.replace(slot)


def run_pages(jobs: Sequence[PageJob], workers: int, options: ExtractSettings | None = None,
              limits: WorkerLimits | None = None, build: Build | None = None) -> list[Report | Rejected]:
    """``build_report`` over ``jobs`` in killable workers; one result per job, in order.

    ``build`` defaults to ``sitrep.pipeline.build_report`` with ``options`` (it must be picklable: a
    top-level function or a functools.partial of one); workers warm up first unless ``build`` is a
    test's own. One page's trouble never raises; workers that cannot even start raise ExtractionError.
    """
    if not jobs:
        return []
    position: dict[int, list[int]] = collections.defaultdict(list)
    for i, job in enumerate(jobs):
        position[id(job)].append(i)
    results: list[Report | Rejected | None] = [None] * len(jobs)
    with PageStream(min(workers, len(jobs)), options, limits, build) as stream:
        for job in jobs:
            stream.put(job)
        stream.close_input()
        for job, result, _ in stream.results():
            results[position[id(job)].pop(0)] = result
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _pipeline_build() -> Callable[..., Report | Rejected]:
    from sitrep.pipeline import build_report

    return build_report
