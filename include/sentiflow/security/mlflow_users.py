"""MLflow's users and what each may do, made as the admin through MLflow's REST API, for every deployment.

Two identities, each granted only what its job needs (docs/security.md has the why of each grant):

- **pipeline** (Airflow tasks, the training process or pod): EDIT on the experiment (create runs and logged
  models, upload artifacts: ``can_update``), MANAGE on the registered model (register versions and move
  aliases need ``can_update``; a rollback may *delete* an alias and a failed registration deletes its
  version, which MLflow gates on ``can_delete``, i.e. MANAGE).
- **server** (every model-server replica): READ on the experiment and the registered model: read the alias,
  the version, its run's metrics, download its artifacts; nothing else.

Only the pipeline moves aliases: a manual release is a run of the release DAG, so no model-server identity
may move an alias, create or tag a version.

``provision`` is the one definition of "these users exist with these grants": the local stack calls it with
its generated secrets (``stack_auth.provision``), and compose's one-shot ``mlflow-init`` service and the
Kubernetes Job ``mlflow-init`` run ``python -m sentiflow.security.mlflow_users provision``, which reads the
credentials from ``SENTIFLOW_MLFLOW_AUTH_*`` (``MLflowAuthSettings``). It is idempotent: a rerun resets each
user's password to the given one (a rotation) and grants anew. ``scope="all"`` (the test suite's private
stacks, which create a registered model per test) grants the server on every
experiment/model (``*``) instead of the served ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import requests
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from sentiflow.security.mlflow_auth import MlflowIdentity, client_for
from sentiflow.settings.components import ENV_PREFIX, MLflowSettings, settings_config

#: Identity roles and their default MLflow user names.
ROLES = {"pipeline": "sentiflow-pipeline", "server": "sentiflow-server"}
ADMIN_USERNAME = "admin"
SCOPES = ("served", "all")


class MLflowAuthSettings(BaseSettings):
    """The credentials the provisioning step makes users of. Env: ``SENTIFLOW_MLFLOW_AUTH_*``.

    Only the one-shot provisioning (compose ``mlflow-init``, the Kubernetes Job) reads these; each component
    reads its own identity under its own names (``MLFLOW_TRACKING_USERNAME/PASSWORD``, the
    ``sentiflow_mlflow`` connection).
    """

    model_config = settings_config("MLFLOW_AUTH_")

    admin_username: str = Field(default=ADMIN_USERNAME, description="MLflow auth app's admin (provisioning).")
    admin_password: SecretStr | None = Field(default=None, description="Password of MLflow's admin.")
    pipeline_username: str = Field(default=ROLES["pipeline"], description="MLflow user of the pipeline.")
    pipeline_password: SecretStr | None = Field(default=None, description="Password of the pipeline's user.")
    server_username: str = Field(default=ROLES["server"], description="MLflow user of the model server.")
    server_password: SecretStr | None = Field(default=None, description="Password of the server's user.")

    def _identity(self, prefix: str) -> MlflowIdentity:
        identity = MlflowIdentity.of(getattr(self, f"{prefix}_username"), getattr(self, f"{prefix}_password"))
        if identity is None:
            env = f"{ENV_PREFIX}MLFLOW_AUTH_{prefix.upper()}"
            raise ValueError(f"{env}_USERNAME and {env}_PASSWORD must both be set")
        return identity

    def admin(self) -> MlflowIdentity:
        return self._identity("admin")

    def users(self) -> dict[str, MlflowIdentity]:
        """Role → identity, for every role of ``ROLES``."""
        return {role: self._identity(role) for role in ROLES}


# --- MLflow's REST API, as the admin -------------------------------------------------------------------
def _call(uri: str, who: MlflowIdentity, method: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.request(
        method,
        uri.rstrip("/") + path,
        json=body,
        auth=(who.username, who.password.get_secret_value()),
        timeout=30,
    )


def ensure_user(uri: str, root: MlflowIdentity, user: MlflowIdentity) -> None:
    """Create ``user`` or, when it exists, set its password to ours (the given credentials are the truth)."""
    password = user.password.get_secret_value()
    response = _call(
        uri, root, "POST", "/api/2.0/mlflow/users/create", {"username": user.username, "password": password}
    )
    if response.status_code == 200:
        return
    if "RESOURCE_ALREADY_EXISTS" not in response.text:
        raise RuntimeError(
            f"MLflow {uri}: cannot create user {user.username}: {response.status_code} {response.text}"
        )
    response = _call(
        uri,
        root,
        "PATCH",
        "/api/2.0/mlflow/users/update-password",
        {"username": user.username, "password": password},
    )
    if response.status_code != 200:
        raise RuntimeError(f"MLflow {uri}: cannot set the password of {user.username}: {response.text}")


def grant(
    uri: str, root: MlflowIdentity, username: str, resource_type: str, resource_id: str, permission: str
) -> None:
    body = {
        "username": username,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "permission": permission,
    }
    response = _call(uri, root, "POST", "/api/3.0/mlflow/users/permissions/grant", body)
    if response.status_code != 200 and "RESOURCE_ALREADY_EXISTS" in response.text:  # a rerun: grant anew
        revoke = {k: body[k] for k in ("username", "resource_type", "resource_id")}
        _call(uri, root, "POST", "/api/3.0/mlflow/users/permissions/revoke", revoke)
        response = _call(uri, root, "POST", "/api/3.0/mlflow/users/permissions/grant", body)
    if response.status_code != 200:
        raise RuntimeError(
            f"MLflow {uri}: cannot grant {permission} on {resource_type} {resource_id!r} to {username}: "
            f"{response.status_code} {response.text}"
        )


def grants(experiment_id: str, model_name: str, scope: str = "served") -> list[tuple[str, str, str, str]]:
    """(role, resource type, resource id, permission) for each grant: the list in this module's docstring."""
    experiment = "*" if scope == "all" else experiment_id
    model = "*" if scope == "all" else model_name
    return [
        ("pipeline", "experiment", experiment_id, "EDIT"),
        ("pipeline", "registered_model", model_name, "MANAGE"),
        ("server", "experiment", experiment, "READ"),
        ("server", "registered_model", model, "READ"),
    ]


def provision(
    uri: str,
    root: MlflowIdentity,
    users: dict[str, MlflowIdentity],
    settings: MLflowSettings | None = None,
    scope: str = "served",
) -> list[tuple[str, str, str, str]]:
    """Idempotent: the experiment, the registered model, one user per role and their grants exist.

    ``users`` maps each role of ``ROLES`` to its identity. Returns the grants made, with user names.
    """
    settings = settings or MLflowSettings()
    client = client_for(uri, root)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(settings.experiment_name)
    )
    try:
        client.create_registered_model(settings.registered_model_name)
    except Exception as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    for role in ROLES:
        ensure_user(uri, root, users[role])
    made = []
    for role, resource_type, resource_id, permission in grants(
        str(experiment_id), settings.registered_model_name, scope
    ):
        grant(uri, root, users[role].username, resource_type, resource_id, permission)
        made.append((users[role].username, resource_type, resource_id, permission))
    return made


def wait_for_mlflow(uri: str, timeout_s: float) -> None:
    """Until ``/health`` answers 200 (it needs no login): a Job may start before MLflow is ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(uri.rstrip("/") + "/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"MLflow at {uri} did not answer /health within {timeout_s:.0f}s")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    """``python -m sentiflow.security.mlflow_users provision``: users and grants from
    ``SENTIFLOW_MLFLOW_AUTH_*``."""
    from sentiflow.security.credentials_check import InsecureSettingsError, check_component

    parser = argparse.ArgumentParser(
        prog="python -m sentiflow.security.mlflow_users", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["provision"])
    parser.add_argument("--scope", choices=SCOPES, default="served", help="grants on the served model or all")
    parser.add_argument("--wait-s", type=float, default=300.0, help="how long to wait for MLflow's /health")
    args = parser.parse_args(argv)
    try:
        check_component("mlflow-init")  # SENTIFLOW_ENV=production: no placeholder passwords
        auth = MLflowAuthSettings()
        root, users = auth.admin(), auth.users()
    except (InsecureSettingsError, ValueError) as exc:
        print(f"mlflow_users: {exc}", file=sys.stderr)
        return 1
    settings = MLflowSettings()
    wait_for_mlflow(settings.tracking_uri, args.wait_s)
    made = provision(settings.tracking_uri, root, users, settings, args.scope)
    for username, resource_type, resource_id, permission in made:
        print(f"mlflow_users: {username}: {permission} on {resource_type} {resource_id!r}")
    print(f"mlflow_users: {len(users)} users provisioned on {settings.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
