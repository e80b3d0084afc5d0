"""The local stack's MLflow authentication: generated secrets, the auth app's config, least-privilege users.

The local MLflow server runs MLflow's own ``basic-auth`` app, as production does, so the code paths that send
credentials are the ones the tests exercise. On first start the stack generates, under its state folder
``<home>/secrets`` (mode 0700, each file 0600), the admin password, the Flask secret key and one password per
identity; later starts reuse them. ``provision`` then (as the admin, through MLflow's REST API) creates the
pipeline's experiment and registered model and the three users, and grants each only what its job needs:

- **pipeline**: EDIT on the experiment (create runs and logged models, upload artifacts: ``can_update``),
  MANAGE on the registered model (register versions and move aliases need ``can_update``; a rollback may
  *delete* an alias and a failed registration deletes its version, which MLflow gates on ``can_delete``,
  i.e. MANAGE).
- **server**: READ on the experiment and the registered model: read the alias, the version, its run's
  metrics, download its artifacts; nothing else.
- **deployer**: MANAGE on the served registered model only. Moving an alias needs ``can_update`` (EDIT, the
  narrowest grant MLflow has for it), but a failed ``/deploy`` rolls back through
  ``registry.restore_aliases``, which *deletes* ``previous`` when it did not exist before, and MLflow gates
  alias deletion on ``can_delete``: with EDIT that rollback got 403 and left the alias on the refused
  version. MANAGE on that one model also allows deleting its versions and granting others on it (nothing
  on any other model, no runs); signature verification keeps anything it registers from being served.

``default_permission`` is ``NO_PERMISSIONS``: an authenticated user without a grant reads nothing, and
anonymous requests are refused (401) everywhere but ``/health``. MLflow without workspaces lets any
authenticated user create *new* experiments and registered models (it becomes their MANAGE owner); that grants
nothing on ours. ``grant_scope="all"`` (the test suite's private stacks, which create a registered model per
test) grants the server's and the deployer's permissions on every experiment/model (``*``) instead.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from sentiflow.config import MLflowSettings
from sentiflow.mlflow_auth import MlflowIdentity, client_for
from sentiflow.signing import write_private

ADMIN_USERNAME = "admin"
SCOPE_DOC = "MLflow grants of the server and deployer users: on the served model (served) or on all (tests)."
#: Identity roles and their MLflow user names.
ROLES = {"pipeline": "sentiflow-pipeline", "server": "sentiflow-server", "deployer": "sentiflow-deployer"}


def secrets_dir(home: Path) -> Path:
    """``<home>/secrets``, created 0700: the stack's generated credentials and keys."""
    directory = home / "secrets"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def secret(home: Path, name: str, factory: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """The stack's secret ``name``, generated on first use (0600) and read back afterwards."""
    path = secrets_dir(home) / name
    if not path.exists():
        write_private(path, factory().encode())
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it and the stack's MLflow auth database to regenerate")
    return value


def admin(home: Path) -> MlflowIdentity:
    return MlflowIdentity(ADMIN_USERNAME, password=_secret_str(secret(home, "mlflow-admin-password")))


def identity(home: Path, role: str) -> MlflowIdentity:
    """The generated credentials of ``role`` (pipeline, server or deployer)."""
    return MlflowIdentity(ROLES[role], password=_secret_str(secret(home, f"mlflow-{role}-password")))


def _secret_str(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def signing_keys(home: Path) -> tuple[Path, Path]:
    """The stack's model-signing key pair (private 0600 for the pipeline, public for the servers)."""
    from sentiflow.signing import generate_key_pair

    directory = secrets_dir(home)
    private, public = directory / "signing-private.pem", directory / "signing-public.pem"
    generate_key_pair(private, public)
    return private, public


def signing_env(home: Path) -> dict[str, str]:
    """The pipeline's private key path and the servers' public key list (``SENTIFLOW_SERVER_SIGNING_*``)."""
    private, public = signing_keys(home)
    return {
        "SENTIFLOW_SIGNING_PRIVATE_KEY_PATH": str(private),
        "SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS": json.dumps([str(public)]),
    }


#: Local S3 identities (SeaweedFS ``-s3.config``) besides the stack's own admin key: MLflow's artifact store,
#: the pipeline, and a read-only one (what a model server reading artifacts straight from S3 would get).
S3_IDENTITIES = {
    "mlflow-artifacts": ("Read", "Write", "List"),
    "pipeline": ("Read", "Write", "List", "Tagging"),
    "reader": ("Read", "List"),
}


def s3_identity(home: Path, name: str) -> tuple[str, str]:
    """(access key id, secret) of a local S3 identity, generated on first use."""
    return f"sentiflow-{name}", secret(home, f"s3-{name}-secret")


def s3_env(home: Path, name: str) -> dict[str, str]:
    """The AWS variables (boto3, MLflow's artifact store) of the local S3 identity ``name``."""
    key, secret_key = s3_identity(home, name)
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret_key}


def s3_config(home: Path, bucket: str, admin_key: str, admin_secret: str) -> Path:
    """SeaweedFS's identities file (0600): the stack's admin key, each identity's actions on the bucket."""
    identities = [
        {
            "name": "stack-admin",
            "credentials": [{"accessKey": admin_key, "secretKey": admin_secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
    ]
    for name, actions in S3_IDENTITIES.items():
        key, secret_key = s3_identity(home, name)
        identities.append(
            {
                "name": name,
                "credentials": [{"accessKey": key, "secretKey": secret_key}],
                "actions": [f"{action}:{bucket}" for action in actions],
            }
        )
    path = secrets_dir(home) / "s3-identities.json"
    path.unlink(missing_ok=True)
    write_private(path, json.dumps({"identities": identities}, indent=2).encode())
    return path


def pipeline_env(home: Path) -> dict[str, str]:
    """The pipeline side's environment: its MLflow identity (MLflow's own variables) and its signing key."""
    return {**identity(home, "pipeline").env(), **signing_env(home)}


def mlflow_connection(home: Path, uri: str) -> str:
    """The ``sentiflow_mlflow`` Airflow connection (JSON): the URL, the pipeline's login and password."""
    pipeline = identity(home, "pipeline")
    password = pipeline.password.get_secret_value()
    return json.dumps({"conn_type": "http", "host": uri, "login": pipeline.username, "password": password})


def model_server_env(home: Path) -> dict[str, str]:
    """The model server's two identities: its own read identity as MLflow's process-wide variables, and the
    separate deploy identity (``POST /deploy``) in ``SENTIFLOW_SERVER_DEPLOY_MLFLOW_*``."""
    deployer = identity(home, "deployer")
    return {
        **identity(home, "server").env(),
        "SENTIFLOW_SERVER_DEPLOY_MLFLOW_USERNAME": deployer.username,
        "SENTIFLOW_SERVER_DEPLOY_MLFLOW_PASSWORD": deployer.password.get_secret_value(),
    }


def auth_config(home: Path, database: Path) -> Path:
    """The auth app's ini (0600): its own SQLite user database, ``NO_PERMISSIONS`` by default.

    The admin password is not in it: ``mlflow_server_env`` hands it over as ``MLFLOW_AUTH_ADMIN_PASSWORD``.
    """
    path = secrets_dir(home) / "mlflow-auth.ini"
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{database}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # Without it every request runs a PBKDF2 password check: each replica polls the alias every second
        # and a model download is one request per file, which on 2 cores slowed deploys by minutes. A
        # password change reaches other workers within 60 s (the local stack runs one).
        "auth_cache_ttl_seconds = 60\n"
    )
    path.unlink(missing_ok=True)
    write_private(path, text.encode())
    return path


def mlflow_server_env(home: Path, database: Path) -> dict[str, str]:
    """What ``mlflow server --app-name basic-auth`` needs: its config, the admin password, a Flask key."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(home, database)),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USERNAME,
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin(home).password.get_secret_value(),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret(home, "mlflow-flask-secret-key"),
    }


# --- provisioning through the REST API, as the admin -----------------------------------------------------
def _call(uri: str, who: MlflowIdentity, method: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.request(
        method,
        uri.rstrip("/") + path,
        json=body,
        auth=(who.username, who.password.get_secret_value()),
        timeout=30,
    )


def ensure_user(uri: str, root: MlflowIdentity, user: MlflowIdentity) -> None:
    """Create ``user`` or, when it exists, set its password to ours (the secrets folder is the truth)."""
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
    if response.status_code != 200 and "RESOURCE_ALREADY_EXISTS" in response.text:  # a restart: grant anew
        revoke = {k: body[k] for k in ("username", "resource_type", "resource_id")}
        _call(uri, root, "POST", "/api/3.0/mlflow/users/permissions/revoke", revoke)
        response = _call(uri, root, "POST", "/api/3.0/mlflow/users/permissions/grant", body)
    if response.status_code != 200:
        raise RuntimeError(
            f"MLflow {uri}: cannot grant {permission} on {resource_type} {resource_id!r} to {username}: "
            f"{response.status_code} {response.text}"
        )


def grants(experiment_id: str, model_name: str, scope: str = "served") -> list[tuple[str, str, str, str]]:
    """(role, resource type, resource id, permission) for each grant: the table in this module's docstring."""
    experiment = "*" if scope == "all" else experiment_id
    model = "*" if scope == "all" else model_name
    return [
        ("pipeline", "experiment", experiment_id, "EDIT"),
        ("pipeline", "registered_model", model_name, "MANAGE"),
        ("server", "experiment", experiment, "READ"),
        ("server", "registered_model", model, "READ"),
        ("deployer", "registered_model", model, "MANAGE"),
    ]


def provision(home: Path, uri: str, settings: MLflowSettings | None = None, scope: str = "served") -> None:
    """Idempotent: the experiment, the registered model, the three users and their grants exist."""
    settings = settings or MLflowSettings()
    root = admin(home)
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
        ensure_user(uri, root, identity(home, role))
    for role, resource_type, resource_id, permission in grants(
        str(experiment_id), settings.registered_model_name, scope
    ):
        grant(uri, root, ROLES[role], resource_type, resource_id, permission)
