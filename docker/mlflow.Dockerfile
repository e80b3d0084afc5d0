# syntax=docker/dockerfile:1
# MLflow tracking server + registry: Postgres backend, artifacts proxied to S3 (SeaweedFS), MLflow's basic-auth app
# (`mlflow[auth]`: Flask-WTF for its CSRF protection). Same pinned mlflow as the library. Build from the repo
# root:  docker build -f docker/mlflow.Dockerfile -t sentiflow/mlflow:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:bcbbec29f7a3f9cbee891e3cd69d7fe4dec7e281daf36cbd415ddd8ee2ba0077

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md* ./
COPY include/ include/
# the `mlflow` extra of pyproject.toml: this image's one package list
RUN pip install --no-cache-dir -c requirements/constraints.txt ".[mlflow]"

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --gid 0 mlflow
COPY --from=build /opt/venv /opt/venv
# The entrypoint's standard-library helpers (sentiflow.security.credentials_check, sentiflow.security.mlflow_auth_ini)
COPY include/sentiflow/security/credentials_check.py include/sentiflow/security/mlflow_auth_ini.py /opt/sentiflow/
COPY --chmod=0755 docker/mlflow/entrypoint.sh /opt/sentiflow/entrypoint.sh
# where the entrypoint writes the auth app's config (it holds the database password: 0600, never in a layer)
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    MLFLOW_AUTH_CONFIG_PATH=/tmp/sentiflow-mlflow-auth/basic_auth.ini
USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["/opt/sentiflow/entrypoint.sh"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--app-name", "basic-auth"]
