"""From Airflow connections to the library's settings objects, and back out to environment variables.

Tasks read endpoints and secrets from Airflow connections (so they live in Airflow's secrets backend, not in
code); the library only ever sees ``S3Settings``/``MLflowSettings``/``ServerEndpoint``. These helpers take
plain values or a connection-like object (``host``, ``schema``, ``port``, ``login``, ``password``,
``extra_dejson``), so they are tested without Airflow.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import SecretStr

from sentiflow.serving_client import ServerEndpoint
from sentiflow.settings.components import ENV_PREFIX, MLflowSettings, S3Settings, export_s3_env_for_mlflow


class ConnectionLike(Protocol):
    host: str | None
    schema: str | None
    port: int | None
    login: str | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


class ConnectionError_(ValueError):
    """A connection lacks what the pipeline needs; the message names the connection and the field."""


def http_url(conn: ConnectionLike, conn_id: str) -> str:
    """Base URL of an http connection: ``host`` may be a full URL, or a host with ``schema``/``port``."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConnectionError_(
            f"Airflow connection {conn_id!r} has no host (expected e.g. http://mlflow:5000)"
        )
    if "://" not in host:
        scheme = conn.schema or "http"
        host = f"{scheme}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return host


def s3_settings_from(
    *,
    access_key_id: str | None,
    secret_access_key: str | None,
    endpoint_url: str | None,
    region_name: str | None,
    bucket: str | None = None,
) -> S3Settings:
    """``S3Settings`` from an aws connection's credentials; unset values keep the ``SENTIFLOW_S3_*`` ones."""
    update: dict[str, Any] = {}
    if access_key_id:
        update["access_key_id"] = access_key_id
    if secret_access_key:
        update["secret_access_key"] = SecretStr(secret_access_key)
    if endpoint_url is not None:
        update["endpoint_url"] = endpoint_url or None
    if region_name:
        update["region"] = region_name
    if bucket:
        update["bucket"] = bucket
    return S3Settings().model_copy(update=update)


def mlflow_settings_from(conn: ConnectionLike, conn_id: str) -> MLflowSettings:
    """The connection's URL, and its login/password as the MLflow identity (the pipeline's)."""
    update: dict[str, Any] = {"tracking_uri": http_url(conn, conn_id)}
    if conn.login and conn.password:
        update.update(username=conn.login, password=SecretStr(conn.password))
    return MLflowSettings().model_copy(update=update)


def server_endpoint_from(conn: ConnectionLike, conn_id: str) -> ServerEndpoint:
    """The model server's URL and tokens: the password (the admin token, for a release's diagnostics) and
    the extra ``reviewer_token`` (the training export of reviewed feedback)."""
    return ServerEndpoint(
        url=http_url(conn, conn_id),
        token=conn.password or None,
        reviewer_token=conn.extra_dejson.get("reviewer_token") or None,
    )


def settings_env(s3: S3Settings, mlflow: MLflowSettings) -> dict[str, str]:
    """Environment for a training process (subprocess or pod) so it sees exactly these settings."""
    env = {
        f"{ENV_PREFIX}S3_BUCKET": s3.bucket,
        f"{ENV_PREFIX}S3_REGION": s3.region,
        f"{ENV_PREFIX}S3_ACCESS_KEY_ID": s3.access_key_id,
        f"{ENV_PREFIX}S3_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        f"{ENV_PREFIX}MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        f"{ENV_PREFIX}MLFLOW_EXPERIMENT_NAME": mlflow.experiment_name,
        f"{ENV_PREFIX}MLFLOW_REGISTERED_MODEL_NAME": mlflow.registered_model_name,
        "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        **export_s3_env_for_mlflow(s3),
    }
    if s3.endpoint_url:
        env[f"{ENV_PREFIX}S3_ENDPOINT_URL"] = s3.endpoint_url
    if mlflow.username and mlflow.password:  # MLflow's own names: the trainer's fluent calls read them
        env["MLFLOW_TRACKING_USERNAME"] = mlflow.username
        env["MLFLOW_TRACKING_PASSWORD"] = mlflow.password.get_secret_value()
    return env
