# syntax=docker/dockerfile:1
# The Airflow image: the official apache/airflow base + the sentiflow library (with CPU torch, so that
# `train_backend=local` trains inside the worker) + the DAGs and plugins. Build from the repo root:
#   docker build -f docker/airflow.Dockerfile -t sentiflow/airflow:0.1.0 .
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:bcbbec29f7a3f9cbee891e3cd69d7fe4dec7e281daf36cbd415ddd8ee2ba0077

# --- stage 1: build the sentiflow wheel (no build tools leak into the runtime image)
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY include/ include/
RUN pip install --no-cache-dir "setuptools==80.9.0" "wheel==0.45.1" \
 && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# --- stage 2: the official image, as its non-root `airflow` user
FROM ${AIRFLOW_IMAGE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
USER 50000
COPY --chown=airflow:0 requirements/constraints.txt /opt/sentiflow/constraints.txt
COPY --chown=airflow:0 --from=wheel /wheels/ /opt/sentiflow/wheels/
# torch first from the CPU index (pinned), then the `airflow` extra of pyproject.toml (Airflow, its providers
# and the training stack: the one package list of this image) under the project's constraints.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==2.13.0" \
 && pip install --no-cache-dir -c /opt/sentiflow/constraints.txt \
      "$(ls /opt/sentiflow/wheels/sentiflow-*.whl)[airflow]"
COPY --chown=airflow:0 docker/airflow/connections.py /opt/sentiflow/connections.py
COPY --chown=airflow:0 docker/airflow/select-backend.sh /opt/sentiflow/select-backend.sh
COPY --chown=airflow:0 docker/airflow/task-env.sh /opt/sentiflow/task-env.sh
COPY --chown=airflow:0 --chmod=0755 docker/airflow/entrypoint.sh /opt/sentiflow/entrypoint.sh
# FAB's settings, so that nothing writes AIRFLOW_HOME at start (a read-only root filesystem on Kubernetes)
COPY --chown=airflow:0 docker/airflow/webserver_config.py /opt/airflow/webserver_config.py
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
ENV HF_HOME=/opt/airflow/.cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/sentiflow/entrypoint.sh"]
CMD ["--help"]
