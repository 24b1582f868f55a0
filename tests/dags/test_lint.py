"""DAG files follow Airflow 3's authoring rules (ruff's AIR3 checks), and do nothing at import time."""

from __future__ import annotations

import json
import subprocess
import sys

from sitrep.settings import PROJECT_ROOT


def test_dags_pass_ruff_airflow3_rules():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "AIR3", "dags"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dag_files_do_no_io_at_import(tmp_path):
    # Importing a DAG file must not touch the database: with a dead database URL it still imports.
    code = ("import importlib.util, pathlib, sys\n"
            "for path in sorted(pathlib.Path('dags').glob('*.py')):\n"
            "    spec = importlib.util.spec_from_file_location(path.stem, path)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "print('imported')\n")
    env = {"SITREP_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "PATH": "/usr/bin:/bin",
           "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr[-2000:]


def test_every_tasks_retries_wait_longer_each_time(tmp_path):
    """Retries ride out a database restart or a failover: the delay doubles (20 s, 40 s, 80 s for the
    ingestion DAG). Airflow 3 takes retry_exponential_backoff as a multiplier; True is 1.0, no backoff."""
    code = ("import json, types\n"
            "from datetime import datetime, timezone\n"
            "from airflow.dag_processing.dagbag import DagBag\n"
            "from airflow.models.taskinstance import TaskInstance\n"
            "bag = DagBag(dag_folder='dags')\n"
            "assert not bag.import_errors, bag.import_errors\n"
            "end = datetime(2026, 1, 1, tzinfo=timezone.utc)\n"
            "out = {}\n"
            "for dag in bag.dags.values():\n"
            "    for task in dag.tasks:\n"
            "        tries = [types.SimpleNamespace(retry_delay_override=None, task=task, try_number=n, end_date=end,\n"
            "                                       dag_id=dag.dag_id, task_id=task.task_id, logical_date=None, log=None)\n"
            "                 for n in (1, 2, 3)]\n"
            "        out[f'{dag.dag_id}.{task.task_id}'] = [(TaskInstance.next_retry_datetime(t) - end).total_seconds()\n"
            "                                               for t in tries]\n"
            "print(json.dumps(out))\n")
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, env=env,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    delays = json.loads(result.stdout.strip().splitlines()[-1])
    assert "sitrep_ingest.batch.load" in delays and len(delays) >= 5
    for task, (first, second, third) in delays.items():
        assert first < second < third, (task, first, second, third)  # deterministic jitter, within each doubling
