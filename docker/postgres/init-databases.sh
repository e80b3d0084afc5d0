#!/bin/bash
# Runs once, on the first start of an empty data volume (postgres image's /docker-entrypoint-initdb.d):
# one login role and one database per component, each database owned by its component's role and closed to
# every other role (no CONNECT for PUBLIC). So the model server's role cannot read or write MLflow's or
# Airflow's database, Airflow's cannot touch the server's, and only the postgres container holds the
# superuser ($POSTGRES_USER).
#
# INIT_DATABASES lists DATABASE=ROLE pairs; ROLE's password comes from the variable <ROLE>_DB_PASSWORD
# (upper case), e.g. model_server=model_server reads MODEL_SERVER_DB_PASSWORD.
set -euo pipefail
for pair in ${INIT_DATABASES:?list DATABASE=ROLE pairs in INIT_DATABASES}; do
  db="${pair%%=*}"
  role="${pair#*=}"
  if [[ -z "$db" || -z "$role" || "$pair" != *=* ]]; then
    echo "init-databases: '${pair}' in INIT_DATABASES is not DATABASE=ROLE" >&2
    exit 1
  fi
  var="$(tr '[:lower:]' '[:upper:]' <<<"${role}")_DB_PASSWORD"
  password="${!var:-}"
  if [[ -z "$password" ]]; then
    echo "init-databases: ${var} is empty; set the ${role} role's password in .env" >&2
    exit 1
  fi
  echo "creating database ${db}, owned by role ${role}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v db="$db" -v role="$role" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
done
