"""`make bench`'s end-to-end section on a small corpus, for real: the generated pages served on loopback,
the real ingestion DAG through dag.test() against the test database, and the ceiling over the same pages.
The figures themselves are the bench's to report (no test asserts on time); this checks that every
number the table is made of is there, counts every page once and is put in its place."""

from __future__ import annotations

from rich.console import Console

import bench._pagegen
import bench.pipeline
from bench.__main__ import _steps
from bench.pipeline import ceiling, one_process, run_pipeline, scaling_caption


def test_the_bench_pipeline_runs_the_real_dag_over_its_corpus_and_measures_every_part(
        monkeypatch, tmp_path, test_home, db_url, capsys):
    monkeypatch.setattr(bench._pagegen, "OUT", tmp_path)  # the corpus in the test's folder, not bench/out
    corpus = bench._pagegen.build_corpus(40)
    assert len(corpus.pages) == 40 and all(p.stat().st_size >= 30_000 for p in corpus.pages)

    assert ceiling(corpus) > 0
    # One process, the same pages: both paths timed, every page a report (not the cheaper failure path).
    one = one_process(corpus, sample=12, rounds=2)
    assert (one["pages"], one["rejected"]) == (12, 0), one
    assert one["bare"] > 0 and one["sitrep"] > 0 and one["ratio"] > 0, one
    monkeypatch.setattr(bench.pipeline, "SAY_EVERY", 0.5)
    with _steps(Console(stderr=True), "pipeline"):  # not a terminal: a line per step
        result = run_pipeline(corpus, test_home, db_url)
    said = [line for line in capsys.readouterr().err.splitlines() if "the ingestion DAG through dag.test(): " in line]
    assert said and "entries polled" in said[-1] and "pages staged" in said[-1], said  # how far the run got

    # Every page ended as a report or a duplicate of one: nothing failed, nothing counted twice.
    assert (result["pages"], result["failed"]) == (40, 0), result
    assert 0 < result["tasks"] <= result["wall"]
    stages = result["stages"]
    for stage in ("poll", "fetch", "extract", "enrich", "dedup", "stage", "load"):
        assert stages.get(stage, 0) > 0, (stage, stages)
    cpu = result["cpu"]
    for group in ("run", "workers", "postgres", "web"):
        assert cpu.get(group, 0) > 0, (group, cpu)
    assert result["peak_memory"] > 100 * 2**20  # the DAG process, its extraction workers, PostgreSQL
    # The run's phases in order, inside its wall time; the long ones with how busy the machine was.
    phases = result["phases"]
    assert [name for name, _, _ in phases] == ["start-up", "poll", "collect", "load", "shut-down"]
    assert all(seconds >= 0 for _, seconds, _ in phases)
    assert sum(seconds for _, seconds, _ in phases) <= result["wall"] + 1
    busy = {name: share for name, _, share in phases}
    # Airflow's start-up (about 10 s) is always measured; a phase shorter than a few of the meter's
    # 0.2 s samples has no share (None: too short to tell), as the collect of these 40 pages (0.5 s) may.
    assert 0 < busy["start-up"] <= 1, phases
    assert all(share is None or 0 < share <= 1 for share in busy.values()), phases


def test_the_scaling_caption_takes_the_vm_s_drift_out_through_the_ceiling_of_each_size():
    # The first run at 666f032: 10.5 ms per page at 20k against 8.5 at 1k, the VM 12% slower then.
    caption = scaling_caption([(1000, 8.5, 205.9), (5000, 7.6, 224.5), (20000, 10.5, 181.8)])
    assert caption == ("per-report cost (tasks) against 1000 pages: 5000: 0.89x in ms per page, 0.97x against the"
                       " ceiling; 20000: 1.24x in ms per page, 1.09x against the ceiling")
    assert scaling_caption([(1000, 8.5, 205.9)]) == ""  # one size: nothing to compare
