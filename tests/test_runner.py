"""The DAG runner's child process exits without the interpreter's teardown, and loses nothing by it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from sitrep import runner
from sitrep.settings import PROJECT_ROOT
from tests.conftest import make_settings


def test_the_quick_exit_joins_threads_runs_exit_handlers_flushes_and_keeps_the_code(tmp_path):
    script = textwrap.dedent(f"""
        import atexit, pathlib, sys, threading, time
        from sitrep.runner import _exit_now
        out = pathlib.Path({str(tmp_path)!r})
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        def late():
            time.sleep(0.5)
            (out / "thread").write_text("done")
        threading.Thread(target=late).start()   # not a daemon: an exit waits for it
        sys.stdout.write("buffered, no newline")
        _exit_now(3)
        (out / "after").write_text("must not run")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=PROJECT_ROOT)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "after").exists()


def test_workers_fork_from_the_forkserver_started_early_and_extract_with_it():
    """The runner child starts the forkserver before Airflow's start-up; the collect's workers must use
    that one (warm), not start another."""
    script = textwrap.dedent("""
        import multiprocessing.forkserver as fs
        from datetime import UTC, datetime
        import psutil
        from sitrep import workers
        from sitrep.records import PageJob, Report
        from tests.pages import article_html, paragraphs

        def forkservers():
            return [p.pid for p in psutil.Process().children()
                    if "multiprocessing.forkserver" in " ".join(p.cmdline())]

        workers.start_forkserver()
        early = forkservers()
        assert len(early) == 1, early
        assert "sitrep._prewarm" in " ".join(psutil.Process(early[0]).cmdline())  # it warms up before forking
        body = article_html("Shelling hits Kharkiv", paragraphs("shelling in Kharkiv")).encode()
        url = "http://127.0.0.1/2024/03/12/shelling.html"
        job = PageJob(entry_id=1, source_id=1, url=url, final_url=url, body=body, fetched_at=datetime.now(UTC))
        [result] = workers.run_pages([job], 2)
        assert isinstance(result, Report) and "Kharkiv" in result.text, result
        assert forkservers() == early, (forkservers(), early)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_runner_child_starts_the_forkserver_first_only_for_the_dag_that_extracts(settings, db_url, tmp_path):
    """It starts before Airflow is even imported: the child for a DAG that is nowhere (an empty DAG folder,
    an Airflow metadata database of this test's own) still started it, and only for the ingestion DAG."""
    own = make_settings(settings, home=tmp_path / "home")
    dags = tmp_path / "dags"
    dags.mkdir()
    env = {**runner.airflow_env(own, db_url), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    runner.ensure_airflow_db(own, env)
    for dag_id, forkservers in (("sitrep_ingest", 1), ("sitrep_export", 0)):
        script = textwrap.dedent(f"""
            import psutil
            from sitrep import runner
            code = runner._child([{dag_id!r}])
            found = [p for p in psutil.Process().children() if "multiprocessing.forkserver" in " ".join(p.cmdline())]
            print(code, len(found))
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                              cwd=PROJECT_ROOT, env=env)
        assert done.stdout.splitlines()[-1:] == [f"2 {forkservers}"], (dag_id, done.stdout[-2000:], done.stderr[-2000:])


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_dag_runs_child_ends_with_the_command_that_started_it(tmp_path, how):
    """`sitrep ingest` stopped by SIGTERM (a service manager, a CI timeout) or killed left its dag.test()
    child running on alone, writing reports nobody watched for."""
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        from sitrep import runner
        with open({str(tmp_path / "child.log")!r}, "wb") as out:
            child = runner.child_process(["sleep", "60"], env={{"PATH": "/usr/bin:/bin"}}, stdout=out)
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.is_running()
    parent.send_signal(how)
    parent.wait(10)
    child.wait(10)  # psutil.TimeoutExpired if it lives on
    assert not child.is_running()
