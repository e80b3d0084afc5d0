"""docker-compose.yaml hands each secret of .env only to the containers that use it (docs/security.md, "Who
holds which secret"). Read from `compose config` with .env.example (the ``resolved`` fixture), whose every
secret is a distinct ``change-me-...`` placeholder: a container holds a secret when its resolved environment
contains that placeholder, bare or inside a URL.
"""

from __future__ import annotations

import pytest

from tests.integration.deployment.compose_file import ENV_EXAMPLE, env_file_values, service_env

_AIRFLOW = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# The containers that run tasks (LocalExecutor: the scheduler; CeleryExecutor: the workers).
_TASKS = {"airflow-scheduler", "airflow-worker"}

# Every secret of .env.example → the services that may hold it, with why.
HOLDERS: dict[str, set[str]] = {
    # each database's password: its component, and Postgres, whose init makes the roles
    "POSTGRES_PASSWORD": {"postgres"},
    "AIRFLOW_DB_PASSWORD": _AIRFLOW | {"postgres"},
    "MLFLOW_DB_PASSWORD": {"mlflow", "postgres"},
    "MODEL_SERVER_DB_PASSWORD": {"model-server", "model-server-migrate", "postgres"},
    # the object store: s3-init makes every identity; each component holds its own key
    "S3_ADMIN_SECRET_KEY": {"s3-init"},
    "SENTIFLOW_S3_SECRET_ACCESS_KEY": _TASKS | {"airflow-init", "s3-init"},  # the init writes the connection
    "S3_MLFLOW_SECRET_KEY": {"mlflow", "s3-init"},
    "S3_MODEL_SERVER_SECRET_KEY": {"model-server", "s3-init"},
    # MLflow's users: mlflow-init makes them; the pipeline's login runs tasks, the server's follows the alias
    "MLFLOW_ADMIN_PASSWORD": {"mlflow", "mlflow-init"},
    "MLFLOW_FLASK_SECRET_KEY": {"mlflow"},
    "MLFLOW_PIPELINE_PASSWORD": _TASKS | {"airflow-init", "mlflow-init"},
    "MLFLOW_SERVER_PASSWORD": {"model-server", "mlflow-init"},
    # the model server's own secrets; Airflow's tasks get the admin token (a release's diagnostics) and the
    # reviewer token (the training export of reviewed feedback) from the connection the init writes
    "SENTIFLOW_SERVER_ADMIN_TOKEN": {"model-server", "airflow-init"},
    "SENTIFLOW_SERVER_REVIEWER_TOKEN": {"model-server", "airflow-init"},
    "SENTIFLOW_SERVER_METRICS_TOKEN": {"model-server"},
    "SENTIFLOW_SERVER_PREDICTION_SECRET": {"model-server"},
    "SENTIFLOW_DRIFT_HASH_KEY": _TASKS | {"model-server"},  # the server hashes samples, the report compares
    "SENTIFLOW_SIGNING_PRIVATE_KEY": _TASKS,
    # Airflow's own: every Airflow component; the admin and the releaser: the init makes them
    "AIRFLOW_ADMIN_PASSWORD": {"airflow-init"},
    "AIRFLOW_RELEASER_PASSWORD": {"airflow-init", "model-server"},
    "AIRFLOW_FERNET_KEY": _AIRFLOW,
    "AIRFLOW_JWT_SECRET": _AIRFLOW,
    "AIRFLOW_API_SECRET_KEY": _AIRFLOW,
}
# Placeholders of .env.example that are not secrets.
NOT_SECRET = {"SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"}


def _placeholders() -> dict[str, str]:
    return {
        k: v.strip("'\"[]")
        for k, v in env_file_values(ENV_EXAMPLE).items()
        if "change-me" in v and k not in NOT_SECRET
    }


def test_the_table_names_every_secret_of_env_example():
    placeholders = _placeholders()
    assert set(placeholders) == set(HOLDERS)
    values = list(placeholders.values())
    # distinct and none inside another, so "holds the placeholder" means "holds this secret"
    assert not [a for a in values for b in values if a != b and a in b]


@pytest.mark.parametrize("secret", sorted(HOLDERS))
def test_each_secret_reaches_only_the_containers_that_use_it(resolved, secret):
    placeholder = _placeholders()[secret]
    holders = {
        name
        for name in resolved["services"]
        if any(placeholder in value for value in service_env(resolved, name).values())
    }
    assert holders == HOLDERS[secret]
