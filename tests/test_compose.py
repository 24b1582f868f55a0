"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine: the services a
Celery deployment needs, their health checks and volumes, the environment each Airflow service gets,
and an image that installs exactly the versions of requirements.lock."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from sitrep import db, roles
from sitrep.settings import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (PROJECT_ROOT / ".env.example").read_text()

AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker"]
LONG_RUNNING = ["postgres", "sitrep-postgres", "redis", *AIRFLOW_SERVICES]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_file() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def _image_commands() -> list[list[str]]:
    """The Dockerfile's RUN instructions (continuations joined), each split into `&&` commands."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    runs = [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith("RUN ")]
    return [shlex.split(cmd) for run in runs for cmd in run.split("&&")]


# ------------------------------------------------------------------------------------------- services


def test_compose_has_every_service_of_a_celery_deployment():
    assert set(LONG_RUNNING + ["airflow-init"]) <= set(SERVICES)
    for name in LONG_RUNNING:
        assert SERVICES[name].get("restart") == "always", name


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert check["interval"] and check["retries"] >= 3


def test_the_api_server_health_check_is_the_monitor_endpoint_and_the_ui_is_published():
    api = SERVICES["airflow-apiserver"]
    assert "http://localhost:8080/api/v2/monitor/health" in api["healthcheck"]["test"]
    assert any(str(p).endswith(":8080") for p in api["ports"])
    assert api["command"] == "api-server"
    assert SERVICES["airflow-scheduler"]["command"] == "scheduler"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    assert SERVICES["airflow-triggerer"]["command"] == "triggerer"
    assert SERVICES["airflow-worker"]["command"] == "celery worker"


def test_workers_scale_with_docker_compose_scale():
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker  # a fixed name forbids --scale
    assert "ports" not in worker  # so would a host port
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0"  # warm shutdown: batches finish


def test_databases_keep_their_data_in_named_volumes():
    declared = set(COMPOSE["volumes"])
    for name, dbname in (("postgres", "airflow"), ("sitrep-postgres", "sitrep")):
        service = SERVICES[name]
        assert service["image"].startswith("postgres:")
        assert service["environment"]["POSTGRES_DB"] == dbname
        volume = next(v.split(":")[0] for v in service["volumes"] if v.endswith("/var/lib/postgresql/data"))
        assert volume in declared
    # Two databases: the metadata never shares a server with the reports.
    assert SERVICES["postgres"]["volumes"] != SERVICES["sitrep-postgres"]["volumes"]
    for name in AIRFLOW_SERVICES:
        assert any(str(v).startswith("airflow-logs:") for v in SERVICES[name]["volumes"])


# ------------------------------------------------------------------------------------------- Airflow


@pytest.mark.parametrize("name", [*AIRFLOW_SERVICES, "airflow-init"])
def test_every_airflow_service_runs_the_project_image_with_celery_and_the_sitrep_connection(name):
    service, env = SERVICES[name], _env(name)
    assert service["build"]["dockerfile"] == "Dockerfile" and service["build"]["context"] == "."
    assert ".env" in service["env_file"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/sitrep/dags"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    # Secrets come from .env, never from the compose file.
    for secret in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
                   "AIRFLOW_CONN_SITREP_POSTGRES"):
        assert env[secret] == f"${{{secret}:?set it in .env}}", secret
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env
    # The warehouse export lands where every worker writes (a shared volume by default).
    assert env["SITREP_EXPORT_PATH"] == "${SITREP_EXPORT_PATH:-/opt/airflow/sitrep/export}"
    assert "sitrep-export:/opt/airflow/sitrep/export" in service["volumes"]
    depends = service["depends_on"]
    for dependency in ("postgres", "sitrep-postgres", "redis"):
        assert depends[dependency]["condition"] == "service_healthy"
    if name != "airflow-init":
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_init_migrates_airflow_then_sitrep_and_creates_the_admin():
    init = SERVICES["airflow-init"]
    script = init["command"][-1]
    env = _env("airflow-init")
    assert env["_AIRFLOW_DB_MIGRATE"] == "true" and env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert "/entrypoint airflow version" in script  # the image's entrypoint runs the migration
    assert script.index("/entrypoint airflow") < script.index("sitrep db migrate")
    assert "set -euo pipefail" in script


def test_no_service_installs_packages_at_start():
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (PROJECT_ROOT / "docker-compose.yml").read_text()


def test_every_variable_the_compose_file_requires_is_in_env_example():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required
    assert required <= set(_env_file()), required - set(_env_file())


def test_env_example_defines_the_sitrep_connection_that_sitrep_uses(monkeypatch):
    values = _env_file()
    uri = values["AIRFLOW_CONN_SITREP_POSTGRES"]
    monkeypatch.delenv("SITREP_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SITREP_POSTGRES", uri)
    url = db.database_url(Settings())
    assert url == uri
    assert "@sitrep-postgres:5432/sitrep" in url
    assert url.startswith(f"postgresql://{roles.LOADER}:{values['SITREP_LOADER_PASSWORD']}@")


def test_tasks_run_as_the_loader_and_only_init_as_the_owner():
    """The owner migrates and sets the roles' passwords in airflow-init; every other service (the
    tasks) has the loader's connection only: rows, no DDL (tests/dags/test_loader_role.py runs every DAG so)."""
    owner = SERVICES["sitrep-postgres"]["environment"]["POSTGRES_USER"]
    init = _env("airflow-init")
    assert init["SITREP_DATABASE_URL"] == (f"postgresql://{owner}:${{SITREP_DB_PASSWORD:?set it in .env}}"
                                           "@sitrep-postgres:5432/sitrep")
    assert {init[var] for var in roles.ROLES.values()} == {f"${{{var}:?set it in .env}}" for var in roles.ROLES.values()}
    script = SERVICES["airflow-init"]["command"][-1]
    assert script.index("sitrep db migrate") < script.index("sitrep roles passwords")
    for name in AIRFLOW_SERVICES:
        assert "SITREP_DATABASE_URL" not in _env(name), name
    assert owner != roles.LOADER and "SITREP_DATABASE_URL" not in _env_file()


def test_env_example_holds_no_real_secret_and_env_is_never_committed_or_copied():
    values = _env_file()
    for key in ("AIRFLOW_DB_PASSWORD", "SITREP_DB_PASSWORD", "SITREP_LOADER_PASSWORD", "SITREP_READER_PASSWORD",
                "AIRFLOW__CORE__FERNET_KEY",
                "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert values[key].startswith("change-me"), key
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()
    assert ".env" in (PROJECT_ROOT / ".dockerignore").read_text().split()


# --------------------------------------------------------------------------------------------- image


def test_image_is_the_official_airflow_image_of_the_locked_version():
    match = re.search(r"^FROM apache/airflow:(\d+\.\d+\.\d+)(?:-python(\d+\.\d+))?\s*$", DOCKERFILE, re.M)
    assert match, "the Dockerfile must build FROM apache/airflow:<version>"
    lock = _lock()
    assert match.group(1) == lock["apache-airflow"] == lock["apache-airflow-core"]


def test_image_installs_exactly_the_lock_and_the_project_without_dependencies():
    commands = [c for c in _image_commands() if c[:2] == ["pip", "install"]]
    assert ["pip", "install", "--no-cache-dir", "-r", "/opt/sitrep/requirements.lock"] in commands
    assert re.search(r"^COPY .*requirements\.lock /opt/sitrep/requirements\.lock$", DOCKERFILE, re.M)
    project = [c for c in commands if "/opt/sitrep" in c and "-r" not in c]
    assert project and all("--no-deps" in c for c in project)
    # Any version pinned in the Dockerfile itself is the lock's.
    lock = _lock()
    for name, version in re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"']*)", DOCKERFILE):
        assert lock.get(_norm(name)) == version, f"{name}=={version} differs from requirements.lock"


def test_image_contains_what_the_dags_need():
    for folder in ("plugins", "dags", "sql", "seeds"):
        assert re.search(rf"^COPY .*\b{folder} /opt/sitrep/{folder}$", DOCKERFILE, re.M), folder
    assert "SITREP_SQL_DIR=/opt/sitrep/sql" in DOCKERFILE
    for path in ("requirements.lock", "pyproject.toml", "plugins", "dags", "sql", "seeds"):
        assert (PROJECT_ROOT / path).exists(), path
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".sitrep", ".git"} <= ignored


def test_the_lock_file_is_what_the_venv_runs():
    """The image and `make` install the same lock: a version drift here would reach production."""
    import importlib.metadata as md

    lock = _lock()
    for name in ("apache-airflow", "apache-airflow-providers-postgres", "psycopg", "trafilatura", "feedparser"):
        assert md.version(name) == lock[name], name


def test_readme_and_docs_document_the_compose_commands():
    operations = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    for command in ("docker compose up -d", "--scale airflow-worker=", "cp .env.example .env"):
        assert command in operations, command
    assert Path(PROJECT_ROOT / "docs" / "scaling.md").exists()


def test_init_refuses_to_start_while_env_holds_a_change_me_value(tmp_path):
    """.env.example's placeholders are public: airflow-init stops with one line naming each one left,
    before it migrates anything (so no service starts with a known password)."""
    script = SERVICES["airflow-init"]["command"][-1]
    check = script[:script.index("mkdir -p")].replace("$$", "$")  # what docker compose hands to bash
    example = {k: v for k, v in _env_file().items() if "change-me" in v}
    assert {"SITREP_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_CONN_SITREP_POSTGRES"} <= set(example)
    base = {"PATH": "/usr/bin:/bin"}

    refused = subprocess.run(["bash", "-c", check], env={**base, **example}, capture_output=True, text=True)
    fine = subprocess.run(["bash", "-c", check + "echo ok"], env={**base, "SITREP_DB_PASSWORD": "s3cret"},
                          capture_output=True, text=True)

    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
    assert f"change-me values ({' '.join(sorted(example))}): set each one" in refused.stderr
    assert (fine.returncode, fine.stdout, fine.stderr) == (0, "ok\n", "")
