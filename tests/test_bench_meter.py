"""bench.pipeline.ProcessMeter, whose numbers are bench/RESULTS.md's "where the cores go" table: each CPU
second lands in the right group, a process born while it samples counts from zero, and the peak memory
(PSS) of the watched trees is kept. Real processes; each burns a fixed amount of its own CPU time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from bench.pipeline import ProcessMeter

# Burns `before` seconds of its own CPU time (whatever the machine's speed), then `seconds` more after a line
# on stdin, says so, then idles.
_BURN = textwrap.dedent("""
    import sys, time
    seconds, megabytes, before = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

    def burn(amount):
        start = time.process_time()
        while time.process_time() - start < amount:
            pass

    burn(before)
    print("ready", flush=True)
    sys.stdin.readline()
    held = bytearray(megabytes * 2**20)
    held[::4096] = b"x" * len(held[::4096])
    burn(seconds)
    print("burnt", flush=True)
    time.sleep(60)
""")

# The run: idle itself, it starts a child only when told (so the child is born after the first sample).
_RUN = textwrap.dedent("""
    import subprocess, sys
    sys.stdin.readline()
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], "0.6", "150", "0"], stdin=subprocess.PIPE,
                             stdout=sys.stdout)
    child.stdin.write(b"go\\n"); child.stdin.flush()
    child.wait()
""")


def _start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_process_meter_counts_cpu_by_group_from_its_first_sample_and_keeps_the_peak_memory():
    run, postgres = _start(_RUN, _BURN), _start(_BURN, "0.4", "100", "0.5")
    try:
        assert postgres.stdout is not None and postgres.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # the run started and idle too: start-up CPU (and postgres's first 0.5 s) before the first sample
        with ProcessMeter(run.pid, postgres.pid, every=0.05) as meter:
            for proc in (run, postgres):
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in (run, postgres):
                assert proc.stdout is not None
                while (line := proc.stdout.readline().strip()) != "burnt":
                    assert line == "ready", line
            time.sleep(0.3)  # a few samples after the burn
        cpu = meter.cpu()
    finally:
        for proc in (*psutil.Process(run.pid).children(recursive=True), run, postgres):
            proc.kill()
            proc.wait()

    # The child: its interpreter's start-up plus 0.6 s burnt, all counted (born during the run).
    assert 0.55 <= cpu["workers"] < 1.5, cpu
    # Started before the first sample: only the 0.4 s burnt after it, not the 0.5 s before (the kernel
    # counts in clock ticks, hence the margin below 0.4).
    assert 0.35 <= cpu["postgres"] < 0.7, cpu
    # The run's own process only started a child.
    assert cpu["run"] < 0.3, cpu
    assert meter.peak >= 250 * 2**20  # the child's 150 MB and the server's 100: every tree's memory


_BACKEND = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.6:\n    pass\n"

# The server: on a line from stdin it starts a backend that burns 0.6 s and exits, waits for it (the kernel
# adds the child's CPU time to the parent's children's time), burns 0.4 s itself, says so, then idles.
_SERVER = textwrap.dedent("""
    import subprocess, sys, time
    sys.stdin.readline()
    subprocess.run([sys.executable, "-c", sys.argv[1]], check=True)
    start = time.process_time()
    while time.process_time() - start < 0.4:
        pass
    print("burnt", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("relist", [1, 10_000])
def test_process_meter_counts_a_backend_that_came_and_went_once(monkeypatch, relist):
    """Listed at every sample (seen alive, then reaped) or never (born and gone between listings): the
    backend's 0.6 s counts once either way, through the postmaster's children's time."""
    monkeypatch.setattr(ProcessMeter, "RELIST", relist)
    run, server = _start("import time; time.sleep(60)"), _start(_SERVER, _BACKEND)
    try:
        time.sleep(0.3)
        with ProcessMeter(run.pid, server.pid, every=0.05) as meter:
            assert server.stdin is not None and server.stdout is not None
            server.stdin.write("go\n")
            server.stdin.flush()
            assert server.stdout.readline().strip() == "burnt"
        cpu = meter.cpu()
    finally:
        for proc in (run, server):
            proc.kill()
            proc.wait()

    # 0.6 s in the backend (plus its interpreter's start-up) and 0.4 s in the server, each once.
    assert 0.9 <= cpu["postgres"] < 1.45, cpu
