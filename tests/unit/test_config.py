"""Settings read SENTIFLOW_* env vars, with defaults that match the local stack."""

from __future__ import annotations

from sentiflow.settings.components import (
    MLflowSettings,
    PipelineDefaults,
    S3Settings,
    export_s3_env_for_mlflow,
)


def test_defaults_point_at_the_local_stack(monkeypatch):
    for key in (
        "SENTIFLOW_S3_ENDPOINT_URL",
        "SENTIFLOW_S3_BUCKET",
        "SENTIFLOW_MLFLOW_TRACKING_URI",
        "SENTIFLOW_DEFAULT_MODEL_NAME",
        "SENTIFLOW_DEFAULT_DATASET",
    ):
        monkeypatch.delenv(key, raising=False)
    assert S3Settings().endpoint_url == "http://127.0.0.1:8333"
    assert MLflowSettings().tracking_uri == "http://127.0.0.1:5000"
    assert PipelineDefaults().model_name == "prajjwal1/bert-tiny"
    assert PipelineDefaults().dataset == "imdb"


def test_env_overrides_with_prefix(monkeypatch):
    monkeypatch.setenv("SENTIFLOW_S3_BUCKET", "prod-bucket")
    monkeypatch.setenv("SENTIFLOW_S3_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME", "other-model")
    monkeypatch.setenv("SENTIFLOW_DEFAULT_MODEL_NAME", "/models/x")
    s3 = S3Settings()
    assert s3.bucket == "prod-bucket"
    assert "s3cr3t" not in repr(s3)  # secrets never show up in logs
    assert export_s3_env_for_mlflow(s3)["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert MLflowSettings().registered_model_name == "other-model"
    assert PipelineDefaults().model_name == "/models/x"
