"""Re-sign registered versions with the pipeline's current key: how an old signing key is retired.

Rotation (docs/deployment.md, "Rotating the signing key") trusts [new, old] everywhere, signs new versions
with the new key, and drops the old key once nothing that may still be served needs it. The versions that
must stay servable (the champion, its rollback target) are re-signed here rather than keeping the old key
listed: each is downloaded, **verified against the keys the servers trust now** (a version that does not
verify is never re-signed, or re-signing would launder a tampered one) and against its registry record
(``model_id``), signed with the pipeline's key (``SENTIFLOW_SIGNING_PRIVATE_KEY[_PATH]``), and only its
signature file is replaced in the store. The pipeline's key must already be trusted
(``SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS``), or the servers would refuse what this signs. Last, the version
is downloaded again and must verify with the pipeline's public key alone. Its signed approval (or
revocation, ``sentiflow.security.approval``) is re-signed the same way: verified first, then signed unchanged.

    python -m sentiflow.security.resign --alias champion --alias previous
    python -m sentiflow.security.resign --version 7 --version 8 [--model NAME]

Run it with the pipeline's environment (its MLflow identity may write the model's artifacts).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sentiflow.security.signing import (
    SignatureError,
    download_version,
    load_verified,
    public_pem,
    sign_folder,
    verify_folder,
    version_model_id,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def _der(pem_or_path: str | Path, *, private: bool = False) -> bytes:
    """The public key (DER) of a PEM text or file, private or public."""
    from cryptography.hazmat.primitives import serialization

    from sentiflow.security.credentials_check import PEM_MARKER

    text = str(pem_or_path)
    data = text.encode() if PEM_MARKER in text else Path(text).read_bytes()
    key = (
        serialization.load_pem_private_key(data, password=None).public_key()
        if private
        else serialization.load_pem_public_key(data)
    )
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def trusted_index(private_key: str | Path, public_keys: Sequence[str | Path]) -> int | None:
    """Which of ``public_keys`` is the public half of ``private_key``; None when none is."""
    mine = _der(private_key, private=True)
    for index, key in enumerate(public_keys):
        try:
            if _der(key) == mine:
                return index
        except (OSError, ValueError):
            continue
    return None


def resign_version(
    client: MlflowClient, name: str, version: str, private_key: str | Path, public_keys: Sequence[str | Path]
) -> str:
    """Re-sign ``name``/``version``; returns a line saying which key it was signed with before."""
    uri = f"models:/{name}/{version}"
    mv = client.get_model_version(name, version)
    model_id = version_model_id(mv)
    if model_id is None:
        raise SignatureError(f"{uri}: names no logged model (source {mv.source!r}): nothing to re-sign")
    with tempfile.TemporaryDirectory(prefix="sentiflow-resign-") as tmp:
        local = download_version(uri, Path(tmp) / "current")
        before = load_verified(local, public_keys, what=uri, expected_model_id=model_id).key_index
        signature = sign_folder(local, private_key)
        client.log_model_artifact(model_id, str(signature))
        again = download_version(uri, Path(tmp) / "again")
        verify_folder(again, [public_pem(private_key)], what=f"{uri} (re-signed)")
    approved = _resign_statement(client, mv, private_key, public_keys)
    return f"{uri}: re-signed with the pipeline's key (it verified with trusted key {before} before)" + (
        f"; its {approved} too" if approved else ""
    )


def _resign_statement(
    client: MlflowClient, mv: ModelVersion, private_key: str | Path, public_keys: Sequence[str | Path]
) -> str | None:
    """The version's signed approval or revocation (``sentiflow.security.approval``), re-signed unchanged
    (its time keeps its place among the model's statements) once it verifies with the trusted keys; None if
    none."""
    from sentiflow.names import TAG_APPROVAL, TAG_APPROVAL_SIGNATURE
    from sentiflow.security import approval

    tags = mv.tags
    if not tags.get(TAG_APPROVAL):
        return None
    statement = approval.verify(tags[TAG_APPROVAL], tags.get(TAG_APPROVAL_SIGNATURE, ""), public_keys)
    payload, signature = approval.sign(statement, private_key)
    client.set_model_version_tag(mv.name, str(mv.version), TAG_APPROVAL, payload)
    client.set_model_version_tag(mv.name, str(mv.version), TAG_APPROVAL_SIGNATURE, signature)
    return "approval" if statement.approved else "revocation"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sentiflow.security.resign", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", help="registered model (default SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME)")
    parser.add_argument("--version", action="append", default=[], help="a version number (repeatable)")
    parser.add_argument("--alias", action="append", default=[], help="an alias, e.g. champion (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from sentiflow import registry
    from sentiflow.settings.components import MLflowSettings, SigningSettings
    from sentiflow.settings.server import ServerSettings

    settings = MLflowSettings()
    name = args.model or settings.registered_model_name
    private_key = SigningSettings().key()
    public_keys = [k for k in ServerSettings().signing_public_keys if k]
    if private_key is None:
        parser.error(
            "no signing key: set SENTIFLOW_SIGNING_PRIVATE_KEY or SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"
        )
    if trusted_index(private_key, public_keys) is None:
        parser.error(
            "the pipeline's signing key is not among SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS: the servers would "
            "refuse what it signs; trust its public key first (step 1 of the rotation)"
        )
    if not args.version and not args.alias:
        parser.error("name at least one --version or --alias")
    client = registry.mlflow_client(settings)
    versions = list(args.version)
    for alias in args.alias:
        versions.append(str(client.get_model_version_by_alias(name, alias).version))
    failed = 0
    for version in dict.fromkeys(versions):
        try:
            print(resign_version(client, name, version, private_key, public_keys))
        except SignatureError as exc:  # the others are still re-signed; the exit status says one failed
            failed += 1
            print(f"models:/{name}/{version}: NOT re-signed: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
