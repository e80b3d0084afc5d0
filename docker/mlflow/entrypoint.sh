#!/bin/sh
# Entrypoint of the sentiflow MLflow image (compose and k8s/mlflow.yaml): refuse placeholder credentials, write
# the basic-auth app's config from the environment, then run the command (`mlflow server ... --app-name
# basic-auth`). The image has no sentiflow installed: both helpers are standard-library files of the library.
set -eu
here=$(dirname "$0")  # /opt/sentiflow in the image: the helpers sit beside this script
# SENTIFLOW_ENV=production: names every empty or placeholder credential and exits 1 (sentiflow.security.credentials_check)
python "$here/credentials_check.py" mlflow
if [ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
  # the ini MLflow's auth app reads (MLFLOW_AUTH_CONFIG_PATH): its user database, NO_PERMISSIONS by default;
  # creates that Postgres database when it does not exist yet (sentiflow.security.mlflow_auth_ini)
  python "$here/mlflow_auth_ini.py" "${MLFLOW_AUTH_CONFIG_PATH:?set MLFLOW_AUTH_CONFIG_PATH}"
fi
exec "$@"
