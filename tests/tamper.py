"""Tamper with a registered version the way someone with write access to the bucket could: overwrite one of
its artifact files in S3 after registration (the signature covers every file; every replica must refuse it).

Shared by the signing tests, the tampered-release e2e test and ``benchmarks/release_trust.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: What overwrites the pickled python model: a pickle that would run a command when loaded.
EVIL_PICKLE_PREFIX = b"cos\nsystem\n(S'id'\ntR."


@dataclass(frozen=True)
class Tampered:
    key: str  # the S3 key overwritten
    original: bytes


def version_artifact_key(name: str, version: str, filename: str = "python_model.pkl") -> str:
    """The S3 key of ``filename`` in the logged model behind registry version ``name``/``version``."""
    import boto3

    from sentiflow import registry
    from sentiflow.security.signing import version_model_id
    from sentiflow.settings.components import S3Settings

    model_id = version_model_id(registry.mlflow_client().get_model_version(name, version))
    assert model_id, f"{name}/{version} names no logged model"
    settings = S3Settings()
    s3 = boto3.client("s3", **settings.boto3_kwargs())  # type: ignore[call-overload]
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket)
        for o in page.get("Contents", [])
        if model_id in o["Key"] and o["Key"].endswith(f"/{filename}")
    ]
    assert len(keys) == 1, keys
    return keys[0]


def overwrite(key: str, body: bytes | None = None) -> Tampered:
    """Replace the object at ``key`` (default: the evil pickle over its first bytes); returns the original."""
    import boto3

    from sentiflow.settings.components import S3Settings

    settings = S3Settings()
    s3 = boto3.client("s3", **settings.boto3_kwargs())  # type: ignore[call-overload]
    original = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    if body is None:
        body = EVIL_PICKLE_PREFIX + original[len(EVIL_PICKLE_PREFIX) :]
    s3.put_object(Bucket=settings.bucket, Key=key, Body=body)
    return Tampered(key, original)


def restore(tampered: Tampered) -> None:
    import boto3

    from sentiflow.settings.components import S3Settings

    settings = S3Settings()
    s3 = boto3.client("s3", **settings.boto3_kwargs())  # type: ignore[call-overload]
    s3.put_object(Bucket=settings.bucket, Key=tampered.key, Body=tampered.original)


@contextmanager
def tampered_version(name: str, version: str, filename: str = "python_model.pkl") -> Iterator[Tampered]:
    """``filename`` of the version overwritten while the block runs, put back afterwards."""
    done = overwrite(version_artifact_key(name, version, filename))
    try:
        yield done
    finally:
        restore(done)
