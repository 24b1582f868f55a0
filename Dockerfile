# sitrep's Airflow image: the official Airflow image of the pinned version, plus the project and
# exactly the pinned dependencies of requirements.lock (never _PIP_ADDITIONAL_REQUIREMENTS, which
# installs at every container start). Every Airflow service of docker-compose.yml runs this image, so
# the scheduler, the dag-processor and every Celery worker parse and run the same code.
#
#   docker compose build            # or: docker build -t sitrep-airflow .
#
# The tag's Airflow version must equal apache-airflow in requirements.lock (tests/test_compose.py
# checks it); the Python version is the one the lock was resolved with.
FROM apache/airflow:3.3.2-python3.11

# The project lives in /opt/sitrep (PROJECT_ROOT): dags/, plugins/sitrep, sql/, seeds/.
ENV SITREP_HOME=/opt/airflow/sitrep \
    SITREP_SQL_DIR=/opt/sitrep/sql \
    SITREP_CACHE_DIR=/opt/sitrep/cache \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/sitrep/dags \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER airflow

# Dependencies first (a layer that changes only when the lock does). The lock pins apache-airflow to
# the image's version, so pip keeps Airflow as it is and installs the rest at the exact versions.
COPY --chown=airflow:0 requirements.lock /opt/sitrep/requirements.lock
RUN pip install --no-cache-dir -r /opt/sitrep/requirements.lock

# Then the project, installed in place (no dependencies: they are all above) so that `sitrep` is on
# PATH and the package finds sql/ and seeds/ beside it. The compiled gazetteer is built here, once,
# instead of by the first extraction task of every new worker (a minute of CPU); group-writable, as
# the containers run as AIRFLOW_UID with group 0.
COPY --chown=airflow:0 pyproject.toml README.md /opt/sitrep/
COPY --chown=airflow:0 plugins /opt/sitrep/plugins
COPY --chown=airflow:0 dags /opt/sitrep/dags
COPY --chown=airflow:0 sql /opt/sitrep/sql
COPY --chown=airflow:0 seeds /opt/sitrep/seeds
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/sitrep \
    && python -c "import sitrep.pipeline, sitrep.cli; from sitrep.gazetteer import gazetteer; gazetteer()" \
    && mkdir -p /opt/airflow/sitrep \
    && chmod -R g+w /opt/sitrep/cache

WORKDIR /opt/airflow
