"""MLflow requires authentication, and each identity can do exactly its job, on a real server.

The session's stack grants the server on every model (``grant_scope="all"``, since tests
register a model per test); here the grants of a real deployment (``served``, ``mlflow_users.grants``) are
made for fresh users of a fresh registered model, so the narrow grants are what is tested.
"""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from sentiflow.security import mlflow_users, stack_auth
from sentiflow.security.mlflow_auth import MlflowIdentity, client_for
from sentiflow.settings.components import MLflowSettings


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "error_code", "")
    return {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}.get(code)


@pytest.fixture(scope="module")
def world(stack):
    """A fresh experiment + registered model, served-scope grants for fresh pipeline/server users, one
    version registered by the pipeline, and a second registered model the server has nothing on."""
    suffix = uuid.uuid4().hex[:8]
    settings = MLflowSettings(experiment_name=f"auth-{suffix}", registered_model_name=f"auth-model-{suffix}")
    uri = stack.mlflow_uri
    root = stack_auth.admin(stack.home)
    admin = client_for(uri, root)
    experiment_id = admin.create_experiment(settings.experiment_name)
    admin.create_registered_model(settings.registered_model_name)
    users = {}
    for role in mlflow_users.ROLES:
        user = MlflowIdentity(f"{role}-{suffix}", SecretStr(uuid.uuid4().hex))
        mlflow_users.ensure_user(uri, root, user)
        users[role] = user
    for role, kind, resource, permission in mlflow_users.grants(
        experiment_id, settings.registered_model_name
    ):
        mlflow_users.grant(uri, root, users[role].username, kind, resource, permission)
    pipeline = client_for(uri, users["pipeline"])
    run = pipeline.create_run(experiment_id)
    version = pipeline.create_model_version(
        settings.registered_model_name, "s3://x/model", run_id=run.info.run_id
    )
    other = f"auth-other-{suffix}"
    pipeline.create_registered_model(other)
    other_version = pipeline.create_model_version(other, "s3://x/other", run_id=run.info.run_id)
    return {
        "uri": uri,
        "settings": settings,
        "users": users,
        "experiment_id": experiment_id,
        "run_id": run.info.run_id,
        "version": str(version.version),
        "other": other,
        "other_version": str(other_version.version),
    }


def _attempts(client, world):
    name = world["settings"].registered_model_name
    return {
        "create run": lambda: client.create_run(world["experiment_id"]),
        "register version": lambda: client.create_model_version(name, "s3://x/evil", run_id=world["run_id"]),
        "move alias": lambda: client.set_registered_model_alias(name, "champion", world["version"]),
    }


def test_anonymous_requests_are_refused(world):
    anonymous = client_for(world["uri"], None)
    for what, attempt in _attempts(anonymous, world).items():
        with pytest.raises(Exception) as caught:
            attempt()
        assert _status(caught.value) == 401, what
    with pytest.raises(Exception) as caught:
        anonymous.get_model_version(world["settings"].registered_model_name, world["version"])
    assert _status(caught.value) == 401


def test_server_identity_reads_but_cannot_write(world):
    server = client_for(world["uri"], world["users"]["server"])
    name = world["settings"].registered_model_name
    assert server.get_model_version(name, world["version"]).run_id == world["run_id"]
    assert server.get_run(world["run_id"]).info.run_id == world["run_id"]
    for what, attempt in _attempts(server, world).items():
        with pytest.raises(Exception) as caught:
            attempt()
        assert _status(caught.value) == 403, what


def test_pipeline_identity_can_run_register_and_move(world):
    pipeline = client_for(world["uri"], world["users"]["pipeline"])
    for attempt in _attempts(pipeline, world).values():
        attempt()
    name = world["settings"].registered_model_name
    assert pipeline.get_model_version_by_alias(name, "champion").version == world["version"]
    pipeline.delete_registered_model_alias(name, "champion")  # a rollback of a first champion deletes it


def test_the_stack_env_carries_the_pipeline_identity(stack):
    import os

    from sentiflow.localstack import stack as localstack

    env = localstack.client_env(stack)
    pipeline = stack_auth.identity(stack.home, "pipeline")
    assert env["MLFLOW_TRACKING_USERNAME"] == pipeline.username == os.environ["MLFLOW_TRACKING_USERNAME"]
    server_env = stack_auth.model_server_env(stack.home)
    assert server_env["MLFLOW_TRACKING_USERNAME"] == stack_auth.ROLES["server"]
    # one MLflow identity, read only; the rest is the local Airflow's user that POST /deploy asks
    assert {k for k in server_env if "MLFLOW" in k} == {
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }
    assert server_env["SENTIFLOW_SERVER_AIRFLOW_USERNAME"] == stack_auth.AIRFLOW_RELEASER
    secrets = stack.home / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    private = [p for p in secrets.iterdir() if p.name != "signing-public.pem"]  # the public key is 0644
    assert private and all(p.stat().st_mode & 0o777 == 0o600 for p in private), private
