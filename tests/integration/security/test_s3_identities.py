"""S3 least privilege on the local stack: SeaweedFS identities; the read-only one cannot write."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from sentiflow import stack_auth


def _client(stack, name: str):
    key, secret = stack_auth.s3_identity(stack.home, name)
    return boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


def test_the_read_only_identity_reads_but_cannot_write_or_delete(stack):
    _client(stack, "pipeline").put_object(Bucket=stack.bucket, Key="least-privilege/probe.txt", Body=b"kept")
    reader = _client(stack, "reader")
    assert reader.get_object(Bucket=stack.bucket, Key="least-privilege/probe.txt")["Body"].read() == b"kept"
    for attempt in (
        lambda: reader.put_object(Bucket=stack.bucket, Key="least-privilege/probe.txt", Body=b"evil"),
        lambda: reader.put_object(Bucket=stack.bucket, Key="mlflow-artifacts/new.pkl", Body=b"evil"),
        lambda: reader.delete_object(Bucket=stack.bucket, Key="least-privilege/probe.txt"),
    ):
        with pytest.raises(ClientError) as caught:
            attempt()
        assert caught.value.response["Error"]["Code"] in ("AccessDenied", "403")
    assert reader.get_object(Bucket=stack.bucket, Key="least-privilege/probe.txt")["Body"].read() == b"kept"


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
