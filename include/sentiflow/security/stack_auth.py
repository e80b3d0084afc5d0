"""The local stack's MLflow authentication: generated secrets, the auth app's config, least-privilege users.

The local MLflow server runs MLflow's own ``basic-auth`` app, as compose and Kubernetes do, so the code paths
that send credentials are the ones the tests exercise. On first start the stack generates, under its state
folder ``<home>/secrets`` (mode 0700, each file 0600), the admin password, the Flask secret key and one
password per identity; later starts reuse them. ``provision`` then makes the pipeline's experiment and
registered model and the two users (pipeline, server) with their grants through
``sentiflow.security.mlflow_users.provision``, the one definition every deployment uses (what each grant is
for is in that module's docstring). The auth app's config is ``sentiflow.security.mlflow_auth_ini``'s, on a
SQLite file.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from sentiflow.security.mlflow_auth import MlflowIdentity
from sentiflow.security.mlflow_auth_ini import write_auth_ini
from sentiflow.security.mlflow_users import ADMIN_USERNAME, ROLES
from sentiflow.security.mlflow_users import provision as provision_users
from sentiflow.security.signing import write_private
from sentiflow.settings.components import DriftSettings, MLflowSettings

SCOPE_DOC = "MLflow grants of the server user: on the served model (served) or on all (tests)."


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
    return MlflowIdentity(ADMIN_USERNAME, password=SecretStr(secret(home, "mlflow-admin-password")))


def identity(home: Path, role: str) -> MlflowIdentity:
    """The generated credentials of ``role`` (pipeline or server)."""
    return MlflowIdentity(ROLES[role], password=SecretStr(secret(home, f"mlflow-{role}-password")))


def signing_keys(home: Path) -> tuple[Path, Path]:
    """The stack's model-signing key pair (private 0600 for the pipeline, public for the servers)."""
    from sentiflow.security.signing import generate_key_pair

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


#: S3 identities (SeaweedFS ``-s3.config``) besides the admin key: MLflow's artifact store, the pipeline, and
#: the model server, which reads model artifacts and writes production samples and nothing else (a replica
#: cannot touch datasets, their manifests or a version's files). ``Action:{name}`` limits an action to keys
#: under that prefix of the bucket (SeaweedFS matches ``Action:bucket/prefix/*``).
S3_IDENTITIES = {
    "mlflow-artifacts": ("Read", "Write", "List"),
    "pipeline": ("Read", "Write", "List", "Tagging"),
    "model-server": ("Read:{artifacts}", "List", "Write:{samples}"),
}


def _s3_action(spec: str, bucket: str, prefixes: dict[str, str]) -> str:
    action, _, scope = spec.partition(":")
    if not scope:
        return f"{action}:{bucket}"
    return f"{action}:{bucket}/{scope.format(**prefixes).strip('/')}/*"


def s3_identity(home: Path, name: str) -> tuple[str, str]:
    """(access key id, secret) of a local S3 identity, generated on first use."""
    return f"sentiflow-{name}", secret(home, f"s3-{name}-secret")


def s3_env(home: Path, name: str) -> dict[str, str]:
    """The AWS variables (boto3, MLflow's artifact store) of the local S3 identity ``name``."""
    key, secret_key = s3_identity(home, name)
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret_key}


def s3_identities(
    bucket: str, admin_key: str, admin_secret: str, keys: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """SeaweedFS's identities document: the admin key, and each of ``S3_IDENTITIES`` (its (key, secret) in
    ``keys``) allowed only its actions on ``bucket``. The local stack and compose's s3-init use it."""
    identities: list[dict[str, Any]] = [
        {
            "name": "stack-admin",
            "credentials": [{"accessKey": admin_key, "secretKey": admin_secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
    ]
    # read when the document is made: a deployment may set them
    prefixes = {"artifacts": MLflowSettings().artifacts_prefix, "samples": DriftSettings().samples_prefix}
    for name, actions in S3_IDENTITIES.items():
        key, secret_key = keys[name]
        identities.append(
            {
                "name": name,
                "credentials": [{"accessKey": key, "secretKey": secret_key}],
                "actions": [_s3_action(spec, bucket, prefixes) for spec in actions],
            }
        )
    return {"identities": identities}


def s3_config(home: Path, bucket: str, admin_key: str, admin_secret: str) -> Path:
    """SeaweedFS's identities file (0600) of the local stack, its identities' secrets generated."""
    keys = {name: s3_identity(home, name) for name in S3_IDENTITIES}
    path = secrets_dir(home) / "s3-identities.json"
    path.unlink(missing_ok=True)
    document = s3_identities(bucket, admin_key, admin_secret, keys)
    write_private(path, json.dumps(document, indent=2).encode())
    return path


def pipeline_env(home: Path) -> dict[str, str]:
    """The pipeline side's environment: its MLflow identity (MLflow's own variables) and its signing key."""
    return {**identity(home, "pipeline").env(), **signing_env(home)}


def mlflow_connection(home: Path, uri: str) -> str:
    """The ``sentiflow_mlflow`` Airflow connection (JSON): the URL, the pipeline's login and password."""
    pipeline = identity(home, "pipeline")
    password = pipeline.password.get_secret_value()
    return json.dumps({"conn_type": "http", "host": uri, "login": pipeline.username, "password": password})


#: The local Airflow's user the model server triggers release runs as
#: (``sentiflow.localstack.airflow_standalone`` makes it).
AIRFLOW_RELEASER = "sentiflow-releaser"


def airflow_releaser_password(home: Path) -> str:
    return secret(home, "airflow-releaser-password")


def model_server_env(home: Path) -> dict[str, str]:
    """The model server's identities: its MLflow identity, read only, as MLflow's process-wide variables,
    its object-store key (model artifacts read, production samples written), and the local Airflow's user
    that ``POST /deploy`` triggers release runs as."""
    s3_key, s3_secret = s3_identity(home, "model-server")
    return {
        **identity(home, "server").env(),
        "SENTIFLOW_S3_ACCESS_KEY_ID": s3_key,
        "SENTIFLOW_S3_SECRET_ACCESS_KEY": s3_secret,
        "SENTIFLOW_SERVER_AIRFLOW_USERNAME": AIRFLOW_RELEASER,
        "SENTIFLOW_SERVER_AIRFLOW_PASSWORD": airflow_releaser_password(home),
    }


def auth_config(home: Path, database: Path) -> Path:
    """The auth app's ini (0600, ``mlflow_auth_ini``): its own SQLite user database, ``NO_PERMISSIONS``.

    The admin password is not in it: ``mlflow_server_env`` hands it over as ``MLFLOW_AUTH_ADMIN_PASSWORD``.
    """
    return write_auth_ini(secrets_dir(home) / "mlflow-auth.ini", f"sqlite:///{database}", ADMIN_USERNAME)


def mlflow_server_env(home: Path, database: Path) -> dict[str, str]:
    """What ``mlflow server --app-name basic-auth`` needs: its config, the admin password, a Flask key."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(home, database)),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USERNAME,
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin(home).password.get_secret_value(),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret(home, "mlflow-flask-secret-key"),
    }


def provision(home: Path, uri: str, settings: MLflowSettings | None = None, scope: str = "served") -> None:
    """Idempotent: the experiment, the registered model, the three users (the stack's generated passwords)
    and their grants exist (``mlflow_users.provision``)."""
    provision_users(uri, admin(home), {role: identity(home, role) for role in ROLES}, settings, scope)
