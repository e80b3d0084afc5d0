#!/usr/bin/env bash
# Create the project venv and install the pinned set. Idempotent; safe on a fresh machine.
# torch comes first through pip, which finds the local CPU wheel (uv does not look there, and an
# unpinned torch from PyPI is a multi-GB CUDA build); uv then installs the rest in seconds: every component's
# extra of pyproject.toml (the images install one each), the local stack's and the developer tools.
# --compile-bytecode writes every module's .pyc now: the suite and the local stack start dozens of Python
# processes (DAG runs, gunicorn, MLflow, Airflow tasks), and where PYTHONDONTWRITEBYTECODE is set each of them
# would otherwise compile Airflow, MLflow and scikit-learn from source again on every start.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS="serve,train,airflow,mlflow,local"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check uv "torch==2.13.0"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --compile-bytecode \
  -r requirements/dev.in -c requirements/constraints.txt -e ".[$EXTRAS]"
"$VENV/bin/uv" pip check --python "$VENV/bin/python" >/dev/null
