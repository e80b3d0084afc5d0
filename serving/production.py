"""Production refuses placeholder secrets: a server started with ``change-me`` tokens is worse than none.

With ``SENTIFLOW_ENV=production`` (compose and the Kubernetes manifests set it), ``create_app`` calls
``check_production_secrets``: the admin token, the prediction-id secret and the drift hash key must each be
set, must not be a placeholder (``change-me...``, ``CHANGE_ME``, the local defaults) and must differ from
each other (one leaked value must not unlock the others), and the development switch that loads versions
without a public key (``allow_unsigned_models``) must be off. The error names every problem at once.
"""

from __future__ import annotations

from pydantic import SecretStr

# One definition of "placeholder" for every component; re-exported for the server's callers.
from sentiflow.security.credentials_check import InsecureSettingsError, is_placeholder
from sentiflow.settings.components import DriftSettings, RuntimeEnvironment
from sentiflow.settings.server import ServerSettings

__all__ = ["InsecureSettingsError", "check_production_secrets", "is_placeholder", "secret_value"]


def secret_value(secret: SecretStr | None) -> str:
    """An optional secret setting's value; "" when unset."""
    return secret.get_secret_value() if secret is not None else ""


def check_production_secrets(
    server: ServerSettings, drift: DriftSettings | None = None, runtime: RuntimeEnvironment | None = None
) -> None:
    runtime = runtime or RuntimeEnvironment()
    if runtime.env != "production":
        return
    drift = drift or DriftSettings()
    secrets = {
        "SENTIFLOW_SERVER_ADMIN_TOKEN": secret_value(server.admin_token),
        "SENTIFLOW_SERVER_PREDICTION_SECRET": secret_value(server.prediction_secret),
        "SENTIFLOW_DRIFT_HASH_KEY": secret_value(drift.hash_key),
    }
    problems = [f"{name} is empty or a placeholder" for name, v in secrets.items() if is_placeholder(v)]
    if server.reviewer_token is not None:  # optional (unset: no review, no feedback trains), never weak
        reviewer = secret_value(server.reviewer_token)
        if is_placeholder(reviewer):
            problems.append("SENTIFLOW_SERVER_REVIEWER_TOKEN is empty or a placeholder")
        secrets["SENTIFLOW_SERVER_REVIEWER_TOKEN"] = reviewer
    if server.allow_unsigned_models:
        problems.append(
            "SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS is on: a development switch, never in production"
        )
    seen: dict[str, str] = {}
    for name, value in secrets.items():
        if value and value in seen:
            problems.append(f"{name} is the same value as {seen[value]}: give each its own secret")
        seen.setdefault(value, name)
    if problems:
        raise InsecureSettingsError(
            "SENTIFLOW_ENV=production refuses to start: "
            + "; ".join(problems)
            + ". Generate secrets with docker/init-env.sh (compose) or set them in the Kubernetes Secret."
        )
