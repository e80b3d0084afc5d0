"""S3 least privilege on the local stack: SeaweedFS identities, the model server's limited to its prefixes."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from sentiflow.security import stack_auth


def _client(stack, name: str):
    key, secret = stack_auth.s3_identity(stack.home, name)
    return boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


def test_the_model_servers_key_reads_artifacts_writes_samples_and_nothing_else(stack):
    """A compromised replica's object-store key cannot rewrite a dataset snapshot, its manifest or a
    version's files, nor read datasets: it reads model artifacts and writes production samples only."""
    pipeline = _client(stack, "pipeline")
    for key in ("mlflow-artifacts/least-privilege/model.pkl", "datasets/least-privilege/manifest.json"):
        pipeline.put_object(Bucket=stack.bucket, Key=key, Body=b"kept")
    server = _client(stack, "model-server")
    artifact = server.get_object(Bucket=stack.bucket, Key="mlflow-artifacts/least-privilege/model.pkl")
    assert artifact["Body"].read() == b"kept"
    server.put_object(Bucket=stack.bucket, Key="production-samples/dt=2026-01-01/w.parquet", Body=b"sample")
    for attempt in (
        lambda: server.put_object(
            Bucket=stack.bucket, Key="datasets/least-privilege/manifest.json", Body=b"evil"
        ),
        lambda: server.put_object(
            Bucket=stack.bucket, Key="mlflow-artifacts/least-privilege/model.pkl", Body=b"x"
        ),
        lambda: server.delete_object(Bucket=stack.bucket, Key="mlflow-artifacts/least-privilege/model.pkl"),
        lambda: server.get_object(Bucket=stack.bucket, Key="datasets/least-privilege/manifest.json"),
    ):
        with pytest.raises(ClientError) as caught:
            attempt()
        assert caught.value.response["Error"]["Code"] in ("AccessDenied", "403")
    for key in ("mlflow-artifacts/least-privilege/model.pkl", "datasets/least-privilege/manifest.json"):
        assert pipeline.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"kept"


def test_mlflow_writes_artifacts_with_its_own_identity_and_strangers_get_nothing(stack):
    _client(stack, "mlflow-artifacts").put_object(
        Bucket=stack.bucket, Key="mlflow-artifacts/probe", Body=b"x"
    )
    stranger = boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id="nobody",
        aws_secret_access_key="nothing-at-all",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError):
        stranger.get_object(Bucket=stack.bucket, Key="mlflow-artifacts/probe")
    config = (stack.home / "secrets" / "s3-identities.json").stat().st_mode & 0o777
    assert config == 0o600
