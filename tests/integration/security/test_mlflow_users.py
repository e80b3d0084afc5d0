"""The provisioning step of compose's ``mlflow-init`` and the Kubernetes Job, against the session's MLflow.

``python -m sentiflow.security.mlflow_users provision`` runs as a child process, as it runs in a container:
the MLflow
URI, the experiment and model names and every credential come from its environment (fresh user names and a
fresh registered model, so the per-model grants of a real deployment are what is tested). Afterwards the
identities it made must do exactly their jobs: the server's cannot move the alias (403), the pipeline's can.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from sentiflow.security import stack_auth
from sentiflow.security.mlflow_auth import MlflowIdentity, client_for

REPO = Path(__file__).resolve().parents[3]


def _status(exc: BaseException) -> int | None:
    return {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}.get(getattr(exc, "error_code", ""))


def provision(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentiflow.security.mlflow_users", "provision", "--wait-s", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def provisioned(stack):
    """Fresh names and passwords handed to the entrypoint by environment, in production mode."""
    suffix = uuid.uuid4().hex[:8]
    users = {
        role: MlflowIdentity(f"{role}-{suffix}", SecretStr(uuid.uuid4().hex)) for role in stack_auth.ROLES
    }
    admin = stack_auth.admin(stack.home)
    env = {
        **os.environ,
        "SENTIFLOW_ENV": "production",  # the placeholder check runs, as in the containers
        "SENTIFLOW_MLFLOW_TRACKING_URI": stack.mlflow_uri,
        "SENTIFLOW_MLFLOW_EXPERIMENT_NAME": f"provision-{suffix}",
        "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME": f"provision-model-{suffix}",
        "SENTIFLOW_MLFLOW_AUTH_ADMIN_USERNAME": admin.username,
        "SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD": admin.password.get_secret_value(),
    }
    for role, user in users.items():
        env[f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_USERNAME"] = user.username
        env[f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_PASSWORD"] = user.password.get_secret_value()
    done = provision(env)
    assert done.returncode == 0, done.stdout + done.stderr
    return {"env": env, "users": users, "output": done.stdout, "uri": stack.mlflow_uri}


def _a_version(provisioned) -> tuple[object, str, str, str]:
    """(pipeline client, model name, version, run id): a run and a version registered by the pipeline."""
    env, uri = provisioned["env"], provisioned["uri"]
    pipeline = client_for(uri, provisioned["users"]["pipeline"])
    experiment = pipeline.get_experiment_by_name(env["SENTIFLOW_MLFLOW_EXPERIMENT_NAME"])
    run = pipeline.create_run(experiment.experiment_id)
    name = env["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"]
    version = pipeline.create_model_version(name, "s3://x/model", run_id=run.info.run_id)
    return pipeline, name, str(version.version), run.info.run_id


def test_the_entrypoint_names_each_grant_and_no_password(provisioned):
    out = provisioned["output"]
    users = provisioned["users"]
    model = provisioned["env"]["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"]
    assert f"{users['server'].username}: READ on registered_model '{model}'" in out
    assert set(users) == {"pipeline", "server"}  # no identity besides the pipeline's may move an alias
    assert f"{users['pipeline'].username}: MANAGE on registered_model '{model}'" in out
    assert not [u for u in users.values() if u.password.get_secret_value() in out]


def test_the_server_identity_cannot_move_the_alias_and_the_pipeline_can(provisioned):
    pipeline, name, version, run_id = _a_version(provisioned)
    server = client_for(provisioned["uri"], provisioned["users"]["server"])
    assert server.get_model_version(name, version).run_id == run_id  # it reads
    with pytest.raises(Exception) as caught:
        server.set_registered_model_alias(name, "champion", version)
    assert _status(caught.value) == 403
    pipeline.set_registered_model_alias(name, "champion", version)
    assert server.get_model_version_by_alias(name, "champion").version == version
    for attempt in (
        lambda: server.delete_registered_model_alias(name, "champion"),
        lambda: server.set_model_version_tag(name, version, "approved", "yes"),
        lambda: server.create_model_version(name, "s3://x/evil", run_id=run_id),
    ):
        with pytest.raises(Exception) as caught:
            attempt()
        assert _status(caught.value) == 403


def test_a_rerun_rotates_a_password(provisioned):
    """Idempotent: run again with a new server password; the old one stops working, the new one works."""
    env = dict(provisioned["env"])
    old = provisioned["users"]["server"]
    new = MlflowIdentity(old.username, SecretStr(uuid.uuid4().hex))
    env["SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD"] = new.password.get_secret_value()
    done = provision(env)
    assert done.returncode == 0, done.stdout + done.stderr
    name = env["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"]
    client_for(provisioned["uri"], new).get_registered_model(name)
    with pytest.raises(Exception) as caught:
        client_for(provisioned["uri"], old).get_registered_model(name)
    assert _status(caught.value) == 401
    provisioned["users"]["server"] = new


def test_production_refuses_a_placeholder_before_touching_mlflow(provisioned):
    env = {**provisioned["env"], "SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD": "change-me-mlflow-server"}
    done = provision(env)
    assert done.returncode == 1
    assert "SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD is empty or a placeholder" in done.stderr


def test_health_needs_no_login_and_everything_else_does(provisioned):
    """What the compose healthcheck and the Kubernetes probes rely on, on the auth app itself."""
    uri = provisioned["uri"]
    assert requests.get(f"{uri}/health", timeout=10).status_code == 200
    anonymous = requests.get(f"{uri}/api/2.0/mlflow/registered-models/search", timeout=10)
    assert anonymous.status_code == 401
