"""MLflow in compose requires a login: it runs its basic-auth app with its users on Postgres,
mlflow-init makes the users each component logs in as, and production refuses the .env.example placeholders
in every service and accepts what docker/init-env.sh generates.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.integration.deployment.compose_file import (
    DOCKER,
    _instructions,
    compose_config,
    declared_requirements,
    service_env,
)


# --- MLflow requires a login; each component logs in as its own identity ---------------------
def test_mlflow_runs_its_basic_auth_app_with_its_users_on_postgres(resolved):
    from sqlalchemy.engine import make_url

    mlflow = resolved["services"]["mlflow"]
    env = service_env(resolved, "mlflow")
    assert "--app-name=basic-auth" in mlflow["command"]
    # the image's entrypoint runs first (no override): the credentials check, then the auth app's config
    assert "entrypoint" not in mlflow
    instructions = _instructions(DOCKER / "mlflow.Dockerfile")
    (entrypoint,) = [i.value for i in instructions if i.cmd.lower() == "entrypoint"]
    assert entrypoint == ("/opt/sentiflow/entrypoint.sh",)
    run = " ".join(i.value[0] for i in instructions if i.cmd.lower() == "run")
    assert '".[mlflow]"' in run  # pyproject's mlflow extra: mlflow[auth] (Flask-WTF: the auth app needs it)
    assert "mlflow[auth]==3.17.2" in declared_requirements("mlflow")
    assert any("MLFLOW_AUTH_CONFIG_PATH" in " ".join(i.value) for i in instructions if i.cmd.lower() == "env")
    backend = make_url(env["MLFLOW_BACKEND_STORE_URI"])
    users_db = make_url(env["MLFLOW_AUTH_DATABASE_URI"])
    assert backend.host == users_db.host == "postgres" and backend.password == users_db.password
    assert (backend.database, users_db.database) == ("mlflow", "mlflow_auth")
    assert env["SENTIFLOW_ENV"] == "production"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert "/health" in json.dumps(mlflow["healthcheck"]["test"])  # needs no login (test_mlflow_image.py)


def test_mlflow_init_makes_the_users_each_component_logs_in_as(resolved, monkeypatch):
    """One provisioning step, two identities: the pipeline's in Airflow (connection and MLflow's variables),
    the server's (read only, its only one) in the model server, each the user mlflow-init makes from .env."""
    from sentiflow.security.mlflow_users import ROLES, MLflowAuthSettings

    services = resolved["services"]
    init = services["mlflow-init"]
    assert init["command"] == ["python", "-m", "sentiflow.security.mlflow_users", "provision"]
    assert init["image"] == services["model-server"]["image"]  # sentiflow and the MLflow client
    assert init["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    for name in ("model-server", "airflow-init", "airflow-scheduler", "airflow-worker"):
        assert services[name]["depends_on"]["mlflow-init"]["condition"] == "service_completed_successfully"
    init_env = service_env(resolved, "mlflow-init")
    for key in [k for k in os.environ if k.startswith("SENTIFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in init_env.items():
        monkeypatch.setenv(key, value)
    auth = MLflowAuthSettings()
    users = {role: (u.username, u.password.get_secret_value()) for role, u in auth.users().items()}
    assert {role: username for role, (username, _) in users.items()} == ROLES
    assert len({password for _, password in users.values()}) == len(ROLES)  # a secret each, not one
    mlflow = service_env(resolved, "mlflow")
    assert (mlflow["MLFLOW_AUTH_ADMIN_USERNAME"], mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"]) == (
        auth.admin().username,
        auth.admin().password.get_secret_value(),
    )
    server = service_env(resolved, "model-server")
    for key in ("SENTIFLOW_MLFLOW_TRACKING_URI", "SENTIFLOW_MLFLOW_EXPERIMENT_NAME"):
        assert init_env[key] == server[key]
    assert (
        init_env["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"] == server["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"]
    )
    assert (server["MLFLOW_TRACKING_USERNAME"], server["MLFLOW_TRACKING_PASSWORD"]) == users["server"]
    assert not [
        k for k in server if "MLFLOW" in k and k.endswith("PASSWORD") and k != "MLFLOW_TRACKING_PASSWORD"
    ]
    # the init writes the pipeline's login into the sentiflow_mlflow connection; the task containers hold it
    # for MLflow's own clients; the other Airflow containers never do (test_compose_secrets.py)
    init = service_env(resolved, "airflow-init")
    assert (init["SENTIFLOW_MLFLOW_USERNAME"], init["SENTIFLOW_MLFLOW_PASSWORD"]) == users["pipeline"]
    for name in ("airflow-scheduler", "airflow-worker"):
        env = service_env(resolved, name)
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == users["pipeline"], name


#: What production must refuse in each service when .env keeps the .env.example placeholders.
MLFLOW_CREDENTIALS = {
    ("mlflow", "mlflow"): (
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_BACKEND_STORE_URI",
        "MLFLOW_AUTH_DATABASE_URI",
    ),
    ("mlflow-init", "mlflow-init"): (
        "SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_PIPELINE_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD",
    ),
    ("airflow-init", "airflow"): ("SENTIFLOW_MLFLOW_PASSWORD",),
    ("airflow-scheduler", "airflow"): ("MLFLOW_TRACKING_PASSWORD",),
    ("model-server", "model-server"): ("MLFLOW_TRACKING_PASSWORD",),
}


@pytest.mark.parametrize(("service", "component"), list(MLFLOW_CREDENTIALS), ids=str)
def test_production_refuses_placeholder_mlflow_credentials_and_accepts_generated_ones(
    resolved, tmp_path, service, component
):
    from sentiflow.security.credentials_check import problems

    refused = " ".join(problems(component, service_env(resolved, service)))
    for name in MLFLOW_CREDENTIALS[service, component]:
        assert name in refused, (name, refused)
    out = tmp_path / ".env"
    subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(out)], check=True, capture_output=True)
    generated = compose_config(out)
    assert generated.returncode == 0, generated.stderr
    left = " ".join(problems(component, service_env(yaml.safe_load(generated.stdout), service)))
    assert not [name for name in MLFLOW_CREDENTIALS[service, component] if name in left], left
