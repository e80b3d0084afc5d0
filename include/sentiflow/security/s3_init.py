"""The object store's one-shots: SeaweedFS's identities file (the S3 policies), then the bucket.

``python -m sentiflow.security.s3_init`` (compose's ``s3-init``) runs in the model-server image. It writes the
identities document of ``stack_auth.s3_identities`` (the one the local stack's ``weed mini`` reads: an
admin key, and the pipeline, MLflow-artifacts and model-server identities, each allowed only its actions
on the bucket) to ``S3_IDENTITIES_FILE`` on the volume the ``seaweedfs`` service reads it from
(``-s3.config``), waits for SeaweedFS's S3 API to answer, and creates the bucket with the admin key.
Idempotent: a rerun rewrites the file with the secrets in ``.env`` (SeaweedFS reads it when it starts)
and keeps the bucket.

The file holds secrets: mode 0640, group 0 (the group every sentiflow container runs with). With
``SENTIFLOW_ENV=production`` empty and placeholder secrets are refused first (``credentials_check``'s
``s3`` component), naming each variable.

Kubernetes has no volume both pods write and read, so there the steps are apart: ``python -m
sentiflow.security.s3_init identities`` prints the same document (from the same variables, with the same
checks) for the Secret the object store mounts (``k8s/object-store.yaml``), and ``python -m
sentiflow.security.s3_init bucket`` (the Job ``object-store-init``) reads that mounted file and creates the
bucket with its admin key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from sentiflow.security.credentials_check import InsecureSettingsError, check_component
from sentiflow.security.stack_auth import s3_identities

#: Each identity of ``stack_auth.S3_IDENTITIES``: the variables holding its access key id and secret.
IDENTITY_VARIABLES = {
    "pipeline": ("SENTIFLOW_S3_ACCESS_KEY_ID", "SENTIFLOW_S3_SECRET_ACCESS_KEY"),
    "mlflow-artifacts": ("S3_MLFLOW_ACCESS_KEY", "S3_MLFLOW_SECRET_KEY"),
    "model-server": ("S3_MODEL_SERVER_ACCESS_KEY", "S3_MODEL_SERVER_SECRET_KEY"),
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


def admin_credentials(document: Mapping[str, object]) -> tuple[str, str]:
    """(access key, secret) of the identity allowed ``Admin`` in an identities document."""
    identities = document.get("identities")
    for identity in identities if isinstance(identities, list) else []:
        if "Admin" in identity.get("actions", []) and identity.get("credentials"):
            credentials = identity["credentials"][0]
            return credentials["accessKey"], credentials["secretKey"]
    raise ValueError("the identities file has no identity allowed Admin")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    step = args[0] if args else "all"
    if step not in ("all", "identities", "bucket"):
        print("usage: python -m sentiflow.security.s3_init [identities | bucket]", file=sys.stderr)
        return 2
    env = os.environ
    path = Path(env.get("S3_IDENTITIES_FILE", "/etc/seaweedfs/s3.json"))
    try:
        if step == "bucket":
            admin_key, admin_secret = admin_credentials(json.loads(path.read_text(encoding="utf-8")))
        else:
            check_component("s3", env)
            document = identities_document(env)
            admin_key, admin_secret = env[ADMIN_VARIABLES[0]], env[ADMIN_VARIABLES[1]]
        bucket = env["SENTIFLOW_S3_BUCKET"]
    except InsecureSettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"s3-init: set {exc.args[0]}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"s3-init: {path}: {exc}", file=sys.stderr)
        return 1
    if step == "identities":
        json.dump(document, sys.stdout, indent=2)
        print()
        return 0
    if step == "all":
        write_identities(path, document)
    create_bucket(env["SENTIFLOW_S3_ENDPOINT_URL"], bucket, admin_key, admin_secret)
    print(f"s3-init: bucket {bucket} ready" + (f", identities in {path}" if step == "all" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
