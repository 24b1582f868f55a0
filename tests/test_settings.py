"""Settings from the environment: a value that would crash a task later, or quietly stop ingestion, is
refused when read, in one line that names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitrep import cli
from sitrep.errors import ConfigError
from sitrep.settings import Settings, ingest_schedule, task_retries


@pytest.mark.parametrize(("name", "value", "says"), [
    ("REVALIDATE_AFTER_HOURS", "inf", "finite"),  # OverflowError in every poll task
    ("DEDUP_WINDOW_DAYS", "inf", "finite"),  # OverflowError in every load task
    ("PER_HOST_DELAY", "nan", "finite"),  # every page pending with "timestamp out of range"
    ("CONNECT_TIMEOUT", "0", "more than 0"),  # every poll failed, then every feed disabled
    ("TOTAL_TIMEOUT", "0", "more than 0"),
    ("READ_TIMEOUT", "-1", "more than 0"),
    ("MAX_PAGE_BYTES", "0", "more than 0"),
    ("DELIVERY_TIMEOUT", "0", "more than 0"),
    ("RELEVANCE_THRESHOLD", "nan", "finite"),
    ("DEDUP_JACCARD", "5", "between 0 and 1"),
    ("DEDUP_CONTAINMENT", "1.5", "between 0 and 1"),
    ("STATEMENT_TIMEOUT_MS", "99999999999", "at most"),  # PostgreSQL refused every connection
    ("TASK_RETRIES", "abc", "not a number"),
])
def test_a_value_that_would_break_ingestion_later_is_refused_when_read(monkeypatch, name, value, says):
    monkeypatch.setenv(f"SITREP_{name}", value)
    with pytest.raises(ConfigError, match=f"SITREP_{name}") as caught:
        Settings.from_env()
    assert says in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
@pytest.mark.parametrize("name", ["EXTRACT_TIMEOUT", "WORKER_MEMORY_MB", "WORKER_START_TIMEOUT"])
def test_the_workers_limits_are_checked_as_every_setting_is(monkeypatch, name, value):
    # They silently became the default (30 s, 1536 MB, 300 s): the limit the operator set was not in force.
    from sitrep.workers import WorkerLimits

    monkeypatch.setenv(f"SITREP_{name}", value)
    with pytest.raises(ConfigError, match=f"^SITREP_{name}="):
        WorkerLimits.from_env()


@pytest.mark.parametrize("name", ["RESPECT_ROBOTS", "CONNECT_TIMEOUT", "SCHEDULE", "USER_AGENT"])
def test_a_blank_setting_is_its_default(monkeypatch, name):
    # docker compose passes ${VAR:-} as an empty value: an empty SITREP_RESPECT_ROBOTS meant robots.txt off.
    monkeypatch.delenv(f"SITREP_{name}", raising=False)
    default = Settings.from_env()
    for blank in ("", " "):
        monkeypatch.setenv(f"SITREP_{name}", blank)
        assert Settings.from_env() == default and ingest_schedule() == "*/10 * * * *"
    assert default.fetch.respect_robots


def test_the_cli_says_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("SITREP_CONNECT_TIMEOUT", "0")
    assert cli.main(["feeds", "list"]) == 2
    err = capsys.readouterr().err
    assert "SITREP_CONNECT_TIMEOUT" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_task_retries_is_read_for_the_dag_files(monkeypatch):
    monkeypatch.setenv("SITREP_TASK_RETRIES", "5")
    assert task_retries() == 5 and Settings.from_env().task_retries == 5
    monkeypatch.delenv("SITREP_TASK_RETRIES")
    assert task_retries() == 3


@pytest.mark.parametrize("value", ["*/10 * * * *", "0 */2 * * 1-5", "@hourly", "@once", "@continuous"])
def test_the_schedule_is_a_cron_expression_or_a_preset(monkeypatch, value):
    monkeypatch.setenv("SITREP_SCHEDULE", value)
    assert ingest_schedule() == value


def test_a_bad_schedule_is_one_line_before_airflow_starts(monkeypatch, capsys):
    # The DAG file read it unchecked: `sitrep ingest` started Airflow and ended with croniter's traceback
    # in the log's tail; under `make airflow` the DAG vanished behind an import error.
    monkeypatch.setenv("SITREP_SCHEDULE", "every ten minutes")
    with pytest.raises(ConfigError, match=r"^SITREP_SCHEDULE='every ten minutes' is not a schedule: give a cron"):
        ingest_schedule()
    monkeypatch.setenv("SITREP_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/never-reached")
    assert cli.main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SITREP_SCHEDULE=") and len(err.strip().splitlines()) == 1


def test_a_relative_home_is_taken_from_where_the_command_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SITREP_HOME", "relhome")
    home = Settings.from_env().home
    assert home.is_absolute() and home == Path(tmp_path / "relhome").resolve()


@pytest.mark.parametrize("value, port", [("8080", 8080), (" 5432 ", 5432), (5433, 5433), ("0", None), ("70000", None),
                                         ("\u00b2", None), ("８０", None), ("-1", None), ("", None), ("abc", None)])
def test_a_port_is_ascii_digits_from_1_to_65535(value, port):
    # str.isdigit() takes "²" and fullwidth digits; int() refused the first with a traceback
    from sitrep.settings import port_number

    assert port_number(value) == port


def test_an_allowed_host_with_a_port_that_is_none_is_one_line():
    from sitrep.netguard import AddressPolicy

    for entry in ("127.0.0.1:\u00b2", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="is not address:port"):
            AddressPolicy.build(allow_private=False, allowed_hosts=[entry])
