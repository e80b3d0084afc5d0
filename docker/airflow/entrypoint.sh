#!/usr/bin/env bash
# Entrypoint of the sentiflow Airflow image: picks the training backend, then hands over to the official
# entrypoint (/entrypoint), or runs the one-shot init (`sentiflow-airflow-init`).
set -euo pipefail

# shellcheck source=task-env.sh
source /opt/sentiflow/task-env.sh
# shellcheck source=select-backend.sh
source /opt/sentiflow/select-backend.sh

# SENTIFLOW_ENV=production: refuse placeholder credentials, naming the variable (sentiflow.security.credentials_check)
python -m sentiflow.security.credentials_check airflow

if [[ "${1:-}" == "sentiflow-airflow-init" ]]; then
  # The official entrypoint migrates the DB and creates the admin user when asked to by these flags.
  _AIRFLOW_DB_MIGRATE=true _AIRFLOW_WWW_USER_CREATE=true /entrypoint airflow version
  conns=$(mktemp --suffix=.json)
  trap 'rm -f "$conns"' EXIT
  python /opt/sentiflow/connections.py >"$conns"
  airflow connections import --overwrite "$conns"
  # The model server's Airflow user (its SENTIFLOW_SERVER_AIRFLOW_*): POST /deploy triggers release runs as
  # it. Role User: trigger and read DAG runs, nothing of the configuration. A rerun sets the password anew.
  if [[ -n "${AIRFLOW_RELEASER_PASSWORD:-}" ]]; then
    releaser="${AIRFLOW_RELEASER_USERNAME:-sentiflow-releaser}"
    airflow users delete --username "$releaser" >/dev/null 2>&1 || true
    airflow users create --username "$releaser" --password "$AIRFLOW_RELEASER_PASSWORD" \
      --role User --firstname sentiflow --lastname releaser --email "$releaser@sentiflow.invalid"
  fi
  echo "sentiflow: Airflow initialised (training backend: ${SENTIFLOW_PIPELINE_TRAIN_BACKEND})"
  exit 0
fi

exec /entrypoint "$@"
