# syntax=docker/dockerfile:1
# The GPU trainer: what the KubernetesPodOperator runs (`python -m sentiflow.train ...`).
# torch from PyPI is the CUDA build for Linux x86_64 (CUDA libraries come as nvidia-* wheels); the node's
# NVIDIA driver and device plugin supply the GPU. Build from the repo root:
#   docker build -f docker/trainer.Dockerfile -t sentiflow/trainer:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:bcbbec29f7a3f9cbee891e3cd69d7fe4dec7e281daf36cbd415ddd8ee2ba0077

# --- stage 1: a virtualenv with the `train` extra of pyproject.toml (the trainer's one package list)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install --no-cache-dir "torch==2.13.0"
COPY pyproject.toml README.md* ./
COPY include/ include/
RUN pip install --no-cache-dir -c requirements/constraints.txt ".[train]"

# --- stage 2: runtime, non-root
FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --gid 0 sentiflow
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/sentiflow/.cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001
WORKDIR /home/sentiflow
CMD ["python", "-m", "sentiflow.train", "--help"]
