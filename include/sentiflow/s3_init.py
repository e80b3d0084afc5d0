"""Compose's ``s3-init`` one-shot: SeaweedFS's identities file (the S3 policies), then the bucket.

``python -m sentiflow.s3_init`` runs in the model-server image. It writes the identities document of
``stack_auth.s3_identities`` (the one the local stack's ``weed mini`` reads: an admin key, and the pipeline,
MLflow-artifacts and read-only identities, each allowed only its actions on the bucket) to
``S3_IDENTITIES_FILE`` on the volume the ``seaweedfs`` service reads it from (``-s3.config``),
waits for SeaweedFS's S3 API to answer, and creates the bucket with the admin key. Idempotent: a rerun
rewrites the file with the secrets in ``.env`` (SeaweedFS reads it when it starts) and keeps the bucket.

The file holds secrets: mode 0640, group 0 (the group every sentiflow container runs with). With
``SENTIFLOW_ENV=production`` empty and placeholder secrets are refused first (``credentials_check``'s
``s3`` component), naming each variable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from sentiflow.credentials_check import InsecureSettingsError, check_component
from sentiflow.stack_auth import s3_identities

#: Each identity of ``stack_auth.S3_IDENTITIES``: the variables holding its access key id and secret.
IDENTITY_VARIABLES = {
    "pipeline": ("SENTIFLOW_S3_ACCESS_KEY_ID", "SENTIFLOW_S3_SECRET_ACCESS_KEY"),
    "mlflow-artifacts": ("S3_MLFLOW_ACCESS_KEY", "S3_MLFLOW_SECRET_KEY"),
    "reader": ("S3_READER_ACCESS_KEY", "S3_READER_SECRET_KEY"),
}
ADMIN_VARIABLES = ("S3_ADMIN_ACCESS_KEY", "S3_ADMIN_SECRET_KEY")


def identities_document(env: Mapping[str, str]) -> dict[str, object]:
    """The identities document from the environment (a missing variable raises ``KeyError``, naming it)."""
    keys = {name: (env[key], env[secret]) for name, (key, secret) in IDENTITY_VARIABLES.items()}
    return s3_identities(env["SENTIFLOW_S3_BUCKET"], env[ADMIN_VARIABLES[0]], env[ADMIN_VARIABLES[1]], keys)


def write_identities(path: Path, document: Mapping[str, object]) -> None:
    """Replace ``path`` atomically with ``document`` (0640: readable by group 0, never by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
    partial.replace(path)


def create_bucket(endpoint: str, bucket: str, key: str, secret: str, timeout: float = 120.0) -> None:
    """Create ``bucket`` with the admin key once the S3 API answers (it exists already: nothing to do)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=os.environ.get("SENTIFLOW_S3_REGION", "us-east-1"),
        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10),
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"s3-init: {endpoint} refused the admin key until the end: {exc}") from exc
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    try:
        check_component("s3", env)
        document = identities_document(env)
    except InsecureSettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"s3-init: set {exc.args[0]}", file=sys.stderr)
        return 1
    write_identities(Path(env.get("S3_IDENTITIES_FILE", "/etc/seaweedfs/s3.json")), document)
    bucket = env["SENTIFLOW_S3_BUCKET"]
    create_bucket(env["SENTIFLOW_S3_ENDPOINT_URL"], bucket, env[ADMIN_VARIABLES[0]], env[ADMIN_VARIABLES[1]])
    users = ", ".join(env[key] for key, _ in IDENTITY_VARIABLES.values())
    print(f"s3-init: bucket {bucket} and identities {users} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
