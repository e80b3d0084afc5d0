"""Signed approvals: a replica serves a version only when the pipeline approved it, and only the newest.

A registry identity that may move an alias (MANAGE on the registered model) could otherwise point
``champion`` at any signed version: one the gate refused, one a release rolled back, another label set. So
every release the pipeline makes ends in a statement signed with the pipeline's private key, the same key
that signs model files (``sentiflow.security.signing``), and stored on the version as two tags:

- promoting a version signs an **approval** of it: the registered model, the version, its logged model id
  (so the statement cannot be copied onto another version) and why (the gate's decision, or a manual
  release with who asked and why);
- rolling a release back signs a **revocation** of the version that failed and a new approval of the
  version served again.

A replica (``serving.model.registry_reader``) loads the version an alias names only when its statement
verifies against the configured public keys (a list, so key rotation covers approvals as it covers model
files), is an approval of that very version and model id, and is the newest approval of any version of the
model: a move back to an older version without a release is refused, and so is every version whose approval
a later release superseded. Someone who can write tags may delete statements (the version then does not serve)
but cannot make one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from sentiflow.names import TAG_APPROVAL, TAG_APPROVAL_SIGNATURE
from sentiflow.security.signing import SignatureError, sign_bytes, verify_bytes, version_model_id

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class Statement(BaseModel):
    """What the pipeline signs about one version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model: str
    version: str
    model_id: str
    #: True: serve it; False: a revocation (a release of it was rolled back).
    approved: bool
    #: Orders statements across versions: the newest approval is the one served.
    signed_at_ns: int
    reason: str
    dag_run_id: str | None = None

    def payload(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def sign(statement: Statement, private_key: str | Path) -> tuple[str, str]:
    """``(statement JSON, base64 ECDSA-SHA256 signature)`` with ``private_key`` (PEM text or path)."""
    payload = statement.payload()
    return payload.decode(), sign_bytes(payload, private_key)


def verify(payload: str, signature: str, public_keys: Sequence[str | Path]) -> Statement:
    """The statement ``payload`` when ``signature`` verifies with any of ``public_keys``; else
    ``SignatureError`` naming why."""
    verify_bytes(payload.encode(), signature, public_keys, what="the approval")
    try:
        return Statement.model_validate_json(payload)
    except ValidationError as exc:
        raise SignatureError(f"the signed approval is not a statement: {exc}") from exc


def make(
    model_version: ModelVersion, *, approved: bool, reason: str, dag_run_id: str | None = None
) -> Statement:
    """The statement about a registry version (``ModelVersion``); a version without a model id cannot be
    approved (nothing would tie the statement to its files)."""
    model_id = version_model_id(model_version)
    if not model_id:
        raise SignatureError(
            f"version {model_version.version} of {model_version.name!r} has no logged model id: it cannot be "
            "approved"
        )
    return Statement(
        registered_model=str(model_version.name),
        version=str(model_version.version),
        model_id=model_id,
        approved=approved,
        signed_at_ns=time.time_ns(),
        reason=reason,
        dag_run_id=dag_run_id,
    )


def record(
    client: MlflowClient,
    name: str,
    version: str,
    private_key: str | Path,
    *,
    approved: bool,
    reason: str,
    dag_run_id: str | None = None,
) -> Statement:
    """Sign and store the statement on the version (``TAG_APPROVAL`` and ``TAG_APPROVAL_SIGNATURE``)."""
    statement = make(
        client.get_model_version(name, str(version)), approved=approved, reason=reason, dag_run_id=dag_run_id
    )
    payload, signature = sign(statement, private_key)
    # the signature last: a reader between the two writes sees a statement that does not verify, and waits
    client.set_model_version_tag(name, str(version), TAG_APPROVAL, payload)
    client.set_model_version_tag(name, str(version), TAG_APPROVAL_SIGNATURE, signature)
    return statement


def _statement(model_version: ModelVersion, public_keys: Sequence[str | Path]) -> Statement | None:
    payload, signature = model_version.tags.get(TAG_APPROVAL), model_version.tags.get(TAG_APPROVAL_SIGNATURE)
    if not payload or not signature:
        return None
    return verify(payload, signature, public_keys)


def check_servable(
    model_version: ModelVersion, all_versions: Iterable[ModelVersion], public_keys: Sequence[str | Path]
) -> Statement:
    """The approval under which ``model_version`` may be served; ``SignatureError`` saying why not.

    ``all_versions``: every version of the registered model with its tags (a statement on another version
    that does not verify is ignored: it cannot outrank anything).
    """
    name, version = str(model_version.name), str(model_version.version)
    what = f"version {version} of {name!r}"
    model_id = version_model_id(model_version)
    if not model_id:
        raise SignatureError(f"{what} has no logged model id: it is never served")
    statement = _statement(model_version, public_keys)
    if statement is None:
        raise SignatureError(f"{what} has no signed approval: only a release by the pipeline approves one")
    if (statement.registered_model, statement.version, statement.model_id) != (name, version, model_id):
        raise SignatureError(
            f"{what}: its approval is for version {statement.version} of {statement.registered_model!r} "
            f"(model {statement.model_id}), not this one"
        )
    if not statement.approved:
        raise SignatureError(f"{what} was revoked by the pipeline: {statement.reason}")
    for other in all_versions:
        if str(other.version) == version:
            continue
        try:
            newer = _statement(other, public_keys)
        except SignatureError:
            continue
        if newer is not None and newer.approved and newer.signed_at_ns > statement.signed_at_ns:
            raise SignatureError(
                f"{what} is not the pipeline's latest approval: version {newer.version} was approved after "
                f"it ({newer.reason}); only a release serves an older version again"
            )
    return statement


def main(argv: list[str] | None = None) -> int:
    """``python -m sentiflow.security.approval --reason TEXT [--model NAME]``: sign an approval of the version
    ``champion`` names now, with the pipeline's key. For a deployment that served before approvals existed:
    its champion has none, and a replica that restarts would refuse it. It approves what is already the
    champion and nothing else (any other version is a release: the release DAG)."""
    import argparse
    import sys

    from sentiflow import registry
    from sentiflow.settings.components import MLflowSettings, SigningSettings

    parser = argparse.ArgumentParser(prog="python -m sentiflow.security.approval", description=main.__doc__)
    parser.add_argument("--model", help="registered model (default SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME)")
    parser.add_argument("--reason", required=True, help="why, recorded in the statement")
    args = parser.parse_args(argv)
    settings = MLflowSettings()
    if args.model:
        settings = settings.model_copy(update={"registered_model_name": args.model})
    key = SigningSettings().key()
    if key is None:
        parser.error(
            "no signing key: set SENTIFLOW_SIGNING_PRIVATE_KEY or SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"
        )
    client = registry.mlflow_client(settings)
    version = registry.version_for_alias(client, settings, settings.champion_alias)
    if version is None:
        parser.error(
            f"{settings.registered_model_name!r} has no {settings.champion_alias!r}: nothing to approve"
        )
    statement = record(
        client, settings.registered_model_name, version, key, approved=True, reason=f"approved as the "
        f"serving champion: {args.reason}"
    )  # fmt: skip
    print(f"version {statement.version} of {statement.registered_model!r} approved: {statement.reason}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
