#!/bin/bash
# Runs once, on the first start of an empty data volume (postgres image's /docker-entrypoint-initdb.d):
# one database per component named in $INIT_DATABASES, owned by $POSTGRES_USER.
set -euo pipefail
for db in ${INIT_DATABASES:-airflow mlflow}; do
  echo "creating database ${db}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "CREATE DATABASE \"${db}\" OWNER \"${POSTGRES_USER}\";"
done
