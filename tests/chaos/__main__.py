"""``python -m tests.chaos [--trials N] [--seed S] [--no-dag] [--write tests/chaos/RESULTS.md]``

Runs the reference ingestion of the demo corpus once, then N SIGKILL trials (at injected points of
every stage and at random times from outside), two database restarts during load and one SIGKILL of
the real DAG run; prints the table. Exit status 1 when anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from sitrep import demo
from tests.chaos.harness import (
    Snapshot,
    Trial,
    add_demo_feeds,
    dag_trial,
    kill_trial,
    private_cluster,
    restart_trial,
    run_clean,
)

#: (stage, delay range in seconds): 0 is the synchronous kill at the very point the stage starts.
KILL_POINTS: list[tuple[str | None, tuple[float, float]]] = [
    ("load", (0.0, 0.0)),      # inside the load transaction: reports inserted, not committed
    ("stage", (0.0, 0.0)),     # inside the collect transaction: staging, entries not yet marked
    ("extract", (0.0, 0.0)),   # the worker pool started, no page fetched or stored yet
    ("fetch", (0.0, 0.0)),     # entries recorded, workers up, no page fetched
    ("fetch", (0.02, 0.3)),    # while pages are being fetched
    ("extract", (0.2, 2.5)),   # while the workers extract
    ("poll", (0.0, 0.15)),     # while feeds are polled and entries recorded
    ("load", (0.0, 0.05)),     # somewhere in or just after the merge
    (None, (0.1, 0.6)),        # from outside, at a random time of the run (scaled to its duration)
]


def _plan(trials: int, rng: random.Random) -> list[tuple[str | None, float]]:
    plan = []
    for i in range(trials):
        stage, (low, high) = KILL_POINTS[i % len(KILL_POINTS)]
        plan.append((stage, rng.uniform(low, high)))
    return plan


def summary_table(trials: list[Trial], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (("fault", "left"), ("trials", "right"), ("faults injected", "right"),
                          ("reports expected", "right"), ("lost", "right"), ("duplicated", "right"),
                          ("retry runs", "right"), ("seconds", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    groups: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        groups[trial.fault.split(" +")[0]].append(trial)
    rows = [(name, group) for name, group in groups.items()] + [("all", trials)]
    for name, group in rows:
        table.add_row(
            name, str(len(group)), str(sum(t.injected for t in group)), str(sum(t.expected for t in group)),
            str(sum(t.lost for t in group)), str(sum(t.duplicated for t in group)),
            str(sum(t.attempts for t in group)), f"{sum(t.seconds for t in group):.0f}",
            style="bold" if name == "all" else None,
        )
    return table


def markdown(table: Table, command: str, notes: list[str]) -> str:
    headers = [str(c.header) for c in table.columns]
    cells = [[str(c) for c in col._cells] for col in table.columns]
    lines = [f"# Chaos results\n\nProduced by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
             "(2 cores, embedded PostgreSQL 18, demo corpus on loopback).\n",
             "Reports expected: the reports one undisturbed run loads (per trial, summed). Lost: expected "
             "reports missing after the retry plus announced entries left open. Duplicated: reports beyond "
             "the expected ones plus staged rows never merged.\n",
             "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL trials (default 20)")
    parser.add_argument("--restarts", type=int, default=2, help="database restarts during load (default 2)")
    parser.add_argument("--seed", type=int, default=10, help="random seed for the kill delays")
    parser.add_argument("--no-dag", action="store_true", help="skip the trial that kills the real DAG run")
    parser.add_argument("--write", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    console = Console()
    rng = random.Random(args.seed)
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="sitrep-chaos-home-") as tmp, private_cluster() as cluster, \
            demo.serve_corpus() as sites:
        home = Path(tmp)
        feeds = [site.feed_url for site in sites]
        reference_url = cluster.fresh()
        add_demo_feeds(reference_url, feeds)
        duration = run_clean(reference_url, home / "reference")
        reference = Snapshot.take(reference_url)
        console.print(f"reference run: {len(reference.reports)} reports from {len(reference.entries)} entries"
                      f" in {duration:.1f}s")
        plan = _plan(args.trials, rng)
        total = len(plan) + args.restarts + (0 if args.no_dag else 1)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("chaos trials", total=total)

            def record(trial: Trial) -> None:
                trials.append(trial)
                progress.advance(task)
                mark = "ok" if trial.ok else "[red]FAIL[/red]"
                console.print(f"{mark} {trial.name}: {trial.fault} lost={trial.lost} duplicated={trial.duplicated}"
                              f" {'; '.join(trial.notes)}")

            for i, (stage, delay) in enumerate(plan):
                url = cluster.fresh()
                add_demo_feeds(url, feeds)
                if stage is None:
                    delay *= duration
                record(kill_trial(url, home / f"t{i}", reference, stage=stage, delay=delay, name=f"kill-{i}"))
            for i in range(args.restarts):
                url = cluster.fresh()
                add_demo_feeds(url, feeds)
                record(restart_trial(cluster, url, home / f"r{i}", reference, name=f"restart-{i}"))
            if not args.no_dag:
                url = cluster.fresh()
                add_demo_feeds(url, feeds)
                record(dag_trial(url, home / "dag", reference, rng))
    started = time.strftime("%H:%M")
    table = summary_table(trials, f"Chaos: {len(trials)} trials, demo corpus ({len(reference.reports)} reports)")
    console.print(table)
    bad = [t for t in trials if not t.ok]
    notes = [f"{t.name}: {t.fault}: {'; '.join(t.notes) or 'fault not injected'}" for t in bad]
    if args.write:
        command = "make chaos" + (f" CHAOS_ARGS={shlex.quote(' '.join(argv or sys.argv[1:]))}"
                                  if (argv or sys.argv[1:]) else "")
        args.write.write_text(markdown(table, command, notes))
        console.print(f"wrote {args.write} ({started})")
    return 1 if any(t.lost or t.duplicated for t in trials) else 0


if __name__ == "__main__":
    sys.exit(main())
