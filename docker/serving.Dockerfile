# syntax=docker/dockerfile:1
# The model server: slim Python, CPU torch, gunicorn + Flask (`serving/`), port 8000.
# Build from the repo root:  docker build -f docker/serving.Dockerfile -t sentiflow/model-server:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:bcbbec29f7a3f9cbee891e3cd69d7fe4dec7e281daf36cbd415ddd8ee2ba0077

# --- stage 1: a virtualenv with CPU torch and the `serve` extra of pyproject.toml (the server's one package list)
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"
COPY pyproject.toml README.md* ./
COPY include/ include/
RUN pip install --no-cache-dir -c requirements/constraints.txt ".[serve]"

# --- stage 2: runtime, non-root
FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --gid 0 sentiflow \
 && mkdir -p /var/lib/sentiflow/model-server /var/lib/sentiflow/s3-config \
 && chown -R 10001:0 /var/lib/sentiflow
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY serving/ serving/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    SENTIFLOW_SERVER_STATE_DIR=/var/lib/sentiflow/model-server \
    HF_HOME=/home/sentiflow/.cache/huggingface
USER 10001
EXPOSE 8000
CMD ["gunicorn", "--config", "serving/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "serving.app:create_app()"]
