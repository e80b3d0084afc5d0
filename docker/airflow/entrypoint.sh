#!/usr/bin/env bash
# Entrypoint of the sentiflow Airflow image: picks the training backend, then hands over to the official
# entrypoint (/entrypoint), or runs the one-shot init (`sentiflow-airflow-init`).
set -euo pipefail

# shellcheck source=select-backend.sh
source /opt/sentiflow/select-backend.sh

# SENTIFLOW_ENV=production: refuse placeholder credentials, naming the variable (sentiflow.credentials_check)
python -m sentiflow.credentials_check airflow

if [[ "${1:-}" == "sentiflow-airflow-init" ]]; then
  # The official entrypoint migrates the DB and creates the admin user when asked to by these flags.
  _AIRFLOW_DB_MIGRATE=true _AIRFLOW_WWW_USER_CREATE=true /entrypoint airflow version
  conns=$(mktemp --suffix=.json)
  trap 'rm -f "$conns"' EXIT
  python /opt/sentiflow/connections.py >"$conns"
  airflow connections import --overwrite "$conns"
  echo "sentiflow: Airflow initialised (training backend: ${SENTIFLOW_PIPELINE_TRAIN_BACKEND})"
  exit 0
fi

exec /entrypoint "$@"
