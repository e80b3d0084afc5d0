"""Production refuses placeholder or empty credentials, in every component, naming the variable.

A component started with ``change-me`` credentials is worse than one that does not start: it looks secured and
is not. With ``SENTIFLOW_ENV=production`` (compose and the Kubernetes manifests set it) each component calls
``check_component`` at start (or runs ``python -m sentiflow.security.credentials_check <component>`` in its
entrypoint)
over the variables it reads. A value is refused when it is empty, starts with ``change-me``/``CHANGE_ME``
(every secret of ``.env.example`` and of ``k8s/secret.template.yaml``), or is one of the local stack's
defaults or a default credential S3 servers have shipped with; a credential embedded in a URL
(``postgresql://user:PASSWORD@host``, an Airflow connection's JSON password) is checked the same way.
The error names every offending variable at once.

Standard library only, so images without sentiflow installed (the MLflow image) can run this file directly.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

#: Placeholder prefixes, compared case-insensitively and ignoring ``-``/``_``.
PLACEHOLDER_PREFIXES = ("changeme",)
#: Values the local stack uses (config defaults, ``StackSettings``): fine on a laptop, never in production.
LOCAL_DEFAULTS = {"sentiflow-drift", "sentiflow-local-token", "sentiflow-secret", "password"}
#: Default credentials S3 servers and their tools have shipped with: the first ones a scanner tries.
SHIPPED_DEFAULTS = {"minioadmin"}
#: How a key given as text, not as a path, starts (``-----BEGIN PUBLIC KEY-----``, ``...PRIVATE KEY-----``).
PEM_MARKER = "-----BEGIN"

#: What each component reads. ``url:`` = a URL whose password is checked; ``conn:`` = an Airflow connection
#: (JSON or URI) whose password is checked; ``keys:`` = a JSON list of public keys, not empty, each a PEM text
#: or an existing PEM file; ``key:`` = a PEM text or, when the first name is unset, a PEM file (the second
#: name) that must exist; ``opt:`` = a credential that may be left unset or empty (its feature is then off),
#: never a placeholder; ``optkey:`` = ``key:``, but both names may be unset (a container that never signs);
#: ``off:`` = a development switch (a boolean setting) that production refuses when it is on.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "model-server": (
        "SENTIFLOW_SERVER_ADMIN_TOKEN",
        "opt:SENTIFLOW_SERVER_REVIEWER_TOKEN",  # unset: no review, so no feedback trains
        "SENTIFLOW_SERVER_PREDICTION_SECRET",
        "SENTIFLOW_DRIFT_HASH_KEY",
        "SENTIFLOW_S3_SECRET_ACCESS_KEY",
        "MLFLOW_TRACKING_PASSWORD",
        "opt:SENTIFLOW_SERVER_AIRFLOW_PASSWORD",  # unset: POST /deploy answers 503 naming it
        "opt:SENTIFLOW_SERVER_METRICS_TOKEN",  # unset: only the admin token reads /metrics
        "url:SENTIFLOW_SERVER_FEEDBACK_DB_URL",
        "keys:SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS",
        "off:SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS",  # ServerSettings.allow_unsigned_models
    ),
    "mlflow": (
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "url:MLFLOW_BACKEND_STORE_URI",
        "url:MLFLOW_AUTH_DATABASE_URI",
    ),
    # the one-shot that makes MLflow's users (python -m sentiflow.security.mlflow_users provision)
    "mlflow-init": (
        "SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_PIPELINE_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD",
    ),
    "airflow": (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        # the admin the official entrypoint creates: set in the init only (compose's AIRFLOW_ADMIN_PASSWORD)
        "opt:_AIRFLOW_WWW_USER_PASSWORD",
        # the model server's Airflow user, made by the init (compose's AIRFLOW_RELEASER_PASSWORD)
        "opt:AIRFLOW_RELEASER_PASSWORD",
        # the model server's admin token, which the init writes into the sentiflow_model_server connection
        "opt:SENTIFLOW_SERVER_ADMIN_TOKEN",
        "url:AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "conn:AIRFLOW_CONN_SENTIFLOW_S3",
        "conn:AIRFLOW_CONN_SENTIFLOW_MLFLOW",
        "conn:AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER",
        # compose builds the sentiflow_mlflow connection from these (docker/airflow/connections.py)
        "opt:SENTIFLOW_MLFLOW_PASSWORD",
        "opt:MLFLOW_TRACKING_PASSWORD",
        # the gate verifies the champion and the challenger before it scores them (gate.scoring)
        "keys:SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS",
        "off:SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS",
        # only the containers that run tasks (local training signs) hold it: the scheduler, the workers
        "optkey:SENTIFLOW_SIGNING_PRIVATE_KEY:SENTIFLOW_SIGNING_PRIVATE_KEY_PATH",
    ),
    "trainer": (
        "SENTIFLOW_S3_SECRET_ACCESS_KEY",
        "MLFLOW_TRACKING_PASSWORD",
        "key:SENTIFLOW_SIGNING_PRIVATE_KEY:SENTIFLOW_SIGNING_PRIVATE_KEY_PATH",
    ),
    # the superuser, and each component's own role (docker/postgres/init-databases.sh)
    "postgres": (
        "POSTGRES_PASSWORD",
        "AIRFLOW_DB_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "MODEL_SERVER_DB_PASSWORD",
    ),
    # compose's s3-init one-shot: SeaweedFS's admin key and each S3 identity's secret
    # (sentiflow.security.s3_init)
    "s3": (
        "S3_ADMIN_SECRET_KEY",
        "SENTIFLOW_S3_SECRET_ACCESS_KEY",
        "S3_MLFLOW_SECRET_KEY",
        "S3_MODEL_SERVER_SECRET_KEY",
    ),
}


class InsecureSettingsError(RuntimeError):
    """A production component was given an empty or placeholder credential."""


def is_placeholder(value: str | None) -> bool:
    """Empty, ``change-me...``/``CHANGE_ME``, a local stack default or a shipped default."""
    text = (value or "").strip()
    folded = text.lower().replace("-", "").replace("_", "")
    return (
        not folded
        or folded.startswith(PLACEHOLDER_PREFIXES)
        or text in LOCAL_DEFAULTS
        or text in SHIPPED_DEFAULTS
    )


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _conn_password(raw: str) -> str | None:
    if raw.lstrip().startswith("{"):
        try:
            value = json.loads(raw).get("password")
        except (ValueError, AttributeError):
            return None
        return None if value is None else str(value)
    return _url_password(raw)


def _switched_on(raw: str) -> bool:
    """A boolean setting is on: anything pydantic does not read as false (unset and empty are off)."""
    return raw.strip().lower() not in ("", "0", "false", "f", "no", "n", "off")


def _keys_problem(name: str, raw: str) -> str | None:
    """``raw`` (a JSON list) names no usable public key: empty, a placeholder, or a path to nothing."""
    try:
        parsed = json.loads(raw or "[]")
    except ValueError:
        parsed = None
    keys = [str(k) for k in parsed if str(k).strip()] if isinstance(parsed, list) else []
    if not keys or any(is_placeholder(k) for k in keys):
        return f"{name} lists no public key (or a placeholder): versions could not be verified"
    missing = [k for k in keys if PEM_MARKER not in k and not Path(k).is_file()]
    if missing:
        return f"{name} names no PEM text and no existing file: {', '.join(missing)}"
    return None


def _key_problem(text_name: str, path_name: str, env: Mapping[str, str], optional: bool) -> str | None:
    """The private key is neither a PEM text in ``text_name`` nor a non-empty file named by ``path_name``."""
    text, path = env.get(text_name, ""), env.get(path_name, "")
    if text.strip():
        if is_placeholder(text) or PEM_MARKER not in text:
            return f"{text_name} is a placeholder, not a PEM private key"
        return None
    if optional and not path.strip():
        return None
    if not path.strip() or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return f"{text_name} and {path_name} are unset or name no key file: the pipeline cannot sign"
    return None


def problems(component: str, env: Mapping[str, str]) -> list[str]:
    """Every variable of ``component`` that is empty or a placeholder, as a sentence naming it."""
    found: list[str | None] = []
    for spec in COMPONENTS[component]:
        kind, _, name = spec.partition(":") if ":" in spec else ("", "", spec)
        if kind == "url":
            if name in env and is_placeholder(_url_password(env[name])):
                found.append(f"{name} has an empty or placeholder password")
        elif kind == "conn":
            if name in env and is_placeholder(_conn_password(env[name])):
                found.append(f"{name} (Airflow connection) has an empty or placeholder password")
        elif kind == "opt":
            if (env.get(name) or "").strip() and is_placeholder(env.get(name)):
                found.append(f"{name} is a placeholder (leave it unset instead)")
        elif kind == "off":
            if _switched_on(env.get(name, "")):
                found.append(f"{name} is on: a development switch, never allowed in production")
        elif kind == "keys":
            found.append(_keys_problem(name, env.get(name, "")))
        elif kind in ("key", "optkey"):
            text_name, _, path_name = name.partition(":")
            found.append(_key_problem(text_name, path_name, env, optional=kind == "optkey"))
        elif is_placeholder(env.get(name)):
            found.append(f"{name} is empty or a placeholder")
    return [problem for problem in found if problem]


def check_component(component: str, env: Mapping[str, str] | None = None) -> None:
    """Raise ``InsecureSettingsError`` naming each bad variable, when ``SENTIFLOW_ENV=production``."""
    env = os.environ if env is None else env
    if env.get("SENTIFLOW_ENV", "development") != "production":
        return
    found = problems(component, env)
    if found:
        raise InsecureSettingsError(
            f"SENTIFLOW_ENV=production: {component} refuses to start: "
            + "; ".join(found)
            + ". Generate credentials with docker/init-env.sh (compose) or set them in the Kubernetes Secret."
        )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMPONENTS:
        print(f"usage: credentials_check.py {{{','.join(COMPONENTS)}}}", file=sys.stderr)
        return 2
    try:
        check_component(args[0])
    except InsecureSettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
