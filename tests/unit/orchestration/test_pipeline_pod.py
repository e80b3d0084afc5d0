"""Airflow connection → settings for the trainer pod.

The pod as Kubernetes would get it from the DAGs: tests/integration/orchestration/test_pipeline_pod_dag.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sentiflow.orchestration.connections import (
    ConnectionError_,
    http_url,
    mlflow_settings_from,
    s3_settings_from,
    server_endpoint_from,
    settings_env,
)


# --- Airflow connection → settings (plain objects standing in for airflow Connection) ---------------------
@dataclass
class Conn:
    host: str | None = None
    schema: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    extra_dejson: dict = field(default_factory=dict)


def test_http_connections_become_urls_and_tokens() -> None:
    assert http_url(Conn(host="http://mlflow:5000/"), "m") == "http://mlflow:5000"
    assert http_url(Conn(host="mlflow", schema="https", port=443), "m") == "https://mlflow:443"
    assert mlflow_settings_from(Conn(host="http://h:1"), "m").tracking_uri == "http://h:1"
    endpoint = server_endpoint_from(
        Conn(host="http://srv:8000", password="tok", extra_dejson={"reviewer_token": "rev"}), "s"
    )
    assert (endpoint.url, endpoint.token, endpoint.reviewer_token) == ("http://srv:8000", "tok", "rev")
    with pytest.raises(ConnectionError_, match="'sentiflow_mlflow' has no host"):
        http_url(Conn(), "sentiflow_mlflow")


def test_s3_settings_and_the_training_env() -> None:
    s3 = s3_settings_from(
        access_key_id="ak", secret_access_key="sk", endpoint_url="http://s3:9000", region_name="eu-west-1"
    )
    assert s3.endpoint_url == "http://s3:9000" and s3.secret_access_key.get_secret_value() == "sk"
    env = settings_env(s3, mlflow_settings_from(Conn(host="http://m:5000"), "m"))
    assert env["SENTIFLOW_S3_SECRET_ACCESS_KEY"] == "sk" and env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    assert env["SENTIFLOW_MLFLOW_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"] == "http://m:5000"
    aws = s3_settings_from(access_key_id="ak", secret_access_key="sk", endpoint_url="", region_name=None)
    assert aws.endpoint_url is None and "SENTIFLOW_S3_ENDPOINT_URL" not in settings_env(aws, aws_ml())


def aws_ml():
    from sentiflow.settings.components import MLflowSettings

    return MLflowSettings()


@pytest.mark.parametrize("mode", ["production", "development"])
def test_the_training_pod_runs_in_the_workers_mode(monkeypatch, mode):
    """A production Airflow starts production trainers: placeholder credentials and no key refuse to run."""
    from sentiflow.orchestration.pod import pod_env_templates
    from sentiflow.orchestration.settings import PipelineSettings, TrainerPodSettings

    monkeypatch.setenv("SENTIFLOW_ENV", mode)
    assert pod_env_templates(PipelineSettings(), TrainerPodSettings())["SENTIFLOW_ENV"] == mode
