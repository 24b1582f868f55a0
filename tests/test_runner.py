"""The DAG runner's child process exits without the interpreter's teardown, and loses nothing by it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sitrep.settings import PROJECT_ROOT


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
