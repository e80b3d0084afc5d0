"""Every component's database has its own role, and no other role can open it.

The compose stack's Postgres runs ``docker/postgres/init-databases.sh`` on its first start; here the same
script runs against a real, throwaway cluster (``postgres_url``), with the ``INIT_DATABASES`` and passwords
docker-compose.yaml gives it, and each role then tries every database. The cluster trusts local logins, so
what is shown is the privilege (CONNECT), which a password would not change. That each service connects
as its own role is read from `compose config` (``resolved``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.integration.deployment.compose_file import DOCKER
from tests.pgcluster import USER, pg_bin

SCRIPT = DOCKER / "postgres" / "init-databases.sh"
#: database -> the role that owns it, as docker-compose.yaml's postgres service lists them
OWNERS = {"airflow": "airflow", "mlflow": "mlflow", "mlflow_auth": "mlflow", "model_server": "model_server"}


def run_init(url: str, init_databases: str, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
    where = make_url(url)
    psql = pg_bin("psql")
    assert psql, "psql missing: run scripts/system_deps.sh"
    env = {
        "PATH": f"{Path(psql).parent}:{os.environ['PATH']}",
        "PGHOST": str(where.host),
        "PGPORT": str(where.port),
        "POSTGRES_USER": USER,
        "INIT_DATABASES": init_databases,
        **passwords,
    }
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def can_open(url: str, role: str, database: str) -> bool:
    engine = sa.create_engine(make_url(url).set(username=role, database=database))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (id int)"))
            conn.commit()
        return True
    except sa.exc.OperationalError as exc:
        assert "permission denied for database" in str(exc), exc
        return False
    finally:
        engine.dispose()


def test_each_role_opens_its_own_database_and_no_other(resolved, postgres_url):
    env = resolved["services"]["postgres"]["environment"]
    assert {pair.split("=")[0]: pair.split("=")[1] for pair in env["INIT_DATABASES"].split()} == OWNERS
    passwords = {k: v for k, v in env.items() if k.endswith("_DB_PASSWORD")}
    result = run_init(postgres_url, env["INIT_DATABASES"], passwords)
    assert result.returncode == 0, result.stderr
    for role in set(OWNERS.values()):
        opened = {db for db in OWNERS if can_open(postgres_url, role, db)}
        assert opened == {db for db, owner in OWNERS.items() if owner == role}, role


def test_a_missing_role_password_fails_the_init_naming_it(postgres_url):
    result = run_init(postgres_url, "extra=extra_role", {})
    assert result.returncode != 0
    assert "EXTRA_ROLE_DB_PASSWORD is empty" in result.stderr


@pytest.mark.parametrize(
    ("service", "variable", "role"),
    [
        ("airflow-scheduler", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow"),
        ("airflow-worker", "AIRFLOW__CELERY__RESULT_BACKEND", "airflow"),
        ("mlflow", "MLFLOW_BACKEND_STORE_URI", "mlflow"),
        ("mlflow", "MLFLOW_AUTH_DATABASE_URI", "mlflow"),
        ("model-server", "SENTIFLOW_SERVER_FEEDBACK_DB_URL", "model_server"),
        ("model-server-migrate", "SENTIFLOW_SERVER_FEEDBACK_DB_URL", "model_server"),
    ],
)
def test_each_service_connects_as_its_own_role(resolved, service, variable, role):
    url = make_url(resolved["services"][service]["environment"][variable].replace("db+", ""))
    assert url.username == role
    assert OWNERS[str(url.database)] == role


def test_only_the_postgres_service_holds_the_superuser_password(resolved):
    holders = {
        name
        for name, service in resolved["services"].items()
        if any("POSTGRES_PASSWORD" in key for key in (service.get("environment") or {}))
        or any(
            f":{resolved['services']['postgres']['environment']['POSTGRES_PASSWORD']}@" in str(value)
            for value in (service.get("environment") or {}).values()
        )
    }
    assert holders == {"postgres"}
