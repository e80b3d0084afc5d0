"""Signed approvals decide which version a replica may serve: only the pipeline's newest approval.

Real ECDSA keys (``cryptography``); versions are the registry's records as plain objects (name, version,
model id, tags), which is all ``check_servable`` reads.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sentiflow.names import TAG_APPROVAL, TAG_APPROVAL_SIGNATURE
from sentiflow.security.approval import check_servable, make, sign, verify
from sentiflow.security.signing import SignatureError

NAME = "sentiment-classifier"


def key_pair() -> tuple[str, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


PIPELINE_KEY, PIPELINE_PUBLIC = key_pair()
OTHER_KEY, OTHER_PUBLIC = key_pair()


def version(number: int, model_id: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=NAME, version=str(number), model_id=model_id or f"m-{number:032x}", tags={})


def stamp(
    mv: SimpleNamespace, key: str = PIPELINE_KEY, *, approved: bool = True, reason: str = "gate"
) -> None:
    payload, signature = sign(make(mv, approved=approved, reason=reason), key)
    mv.tags = {TAG_APPROVAL: payload, TAG_APPROVAL_SIGNATURE: signature}


def test_the_newest_approval_serves_and_an_older_one_does_not():
    v1, v2 = version(1), version(2)
    stamp(v1)
    stamp(v2)
    assert check_servable(v2, [v1, v2], [PIPELINE_PUBLIC]).version == "2"
    with pytest.raises(SignatureError, match="version 2 was approved after it"):
        check_servable(v1, [v1, v2], [PIPELINE_PUBLIC])
    stamp(v1, reason="rollback")  # a release of v1 again (a rollback) approves it anew
    assert check_servable(v1, [v1, v2], [PIPELINE_PUBLIC]).reason == "rollback"


def test_a_revoked_version_is_refused_with_the_reason():
    v1 = version(1)
    stamp(v1, approved=False, reason="inference check failed: accuracy 0.4")
    with pytest.raises(SignatureError, match="revoked by the pipeline: inference check failed"):
        check_servable(v1, [v1], [PIPELINE_PUBLIC])


def test_no_statement_a_foreign_key_or_a_copied_statement_is_refused():
    v1, v2 = version(1), version(2)
    with pytest.raises(SignatureError, match="no signed approval"):
        check_servable(v1, [v1], [PIPELINE_PUBLIC])
    stamp(v1, OTHER_KEY)
    with pytest.raises(SignatureError, match="invalid for all 1 public key"):
        check_servable(v1, [v1], [PIPELINE_PUBLIC])
    stamp(v1)
    v2.tags = dict(v1.tags)  # version 1's approval copied onto version 2
    with pytest.raises(SignatureError, match="its approval is for version 1"):
        check_servable(v2, [v1, v2], [PIPELINE_PUBLIC])


def test_an_edited_statement_does_not_verify():
    v1 = version(1)
    stamp(v1)
    edited = v1.tags[TAG_APPROVAL].replace('"version":"1"', '"version":"7"')
    with pytest.raises(SignatureError, match="invalid"):
        verify(edited, v1.tags[TAG_APPROVAL_SIGNATURE], [PIPELINE_PUBLIC])


def test_a_version_without_a_model_id_is_never_served_nor_approved():
    bare = SimpleNamespace(name=NAME, version="3", model_id=None, source="s3://bucket/run/model", tags={})
    with pytest.raises(SignatureError, match="no logged model id"):
        make(bare, approved=True, reason="gate")
    with pytest.raises(SignatureError, match="no logged model id"):
        check_servable(bare, [bare], [PIPELINE_PUBLIC])


def test_rotation_verifies_with_any_listed_key_and_ignores_garbage_elsewhere():
    v1, v2 = version(1), version(2)
    stamp(v1, OTHER_KEY)
    v2.tags = {TAG_APPROVAL: '{"forged": true}', TAG_APPROVAL_SIGNATURE: "AAAA"}  # cannot outrank v1
    assert check_servable(v1, [v1, v2], [PIPELINE_PUBLIC, OTHER_PUBLIC]).version == "1"
