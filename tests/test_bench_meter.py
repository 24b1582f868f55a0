"""bench.pipeline.ProcessMeter, whose numbers are bench/RESULTS.md's "where the cores go" table: each CPU
second lands in the right group, a process born while it samples counts from zero, and the peak RSS
of the run's tree is kept. Real processes; each burns a fixed amount of its own CPU time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil

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


def test_process_meter_counts_cpu_by_group_from_its_first_sample_and_keeps_the_peak_rss():
    run, postgres = _start(_RUN, _BURN), _start(_BURN, "0.4", "0", "0.5")
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
    assert meter.peak >= 150 * 2**20
