"""Retiring a signing key (``python -m sentiflow.security.resign``), against the session's real MLflow + S3.

A version signed with the stack's key (the old one) is re-signed with a new key the servers already trust:
afterwards it verifies with the new key alone and no longer with the old one. A tampered version is never
re-signed, and neither is anything while the new key is not yet trusted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentiflow.names import TAG_APPROVAL, TAG_APPROVAL_SIGNATURE
from sentiflow.security.signing import SignatureError, download_version, generate_key_pair, verify_folder


@pytest.fixture
def new_key(stack, tmp_path, monkeypatch) -> tuple[Path, Path, list[str]]:
    """A new pair; the pipeline signs with it, the servers trust [new, old] (step 1-2 of the rotation)."""
    from sentiflow.settings.server import ServerSettings

    old_public = ServerSettings().signing_public_keys
    private, public = tmp_path / "new.pem", tmp_path / "new.pub"
    generate_key_pair(private, public)
    monkeypatch.setenv("SENTIFLOW_SIGNING_PRIVATE_KEY_PATH", str(private))
    monkeypatch.delenv("SENTIFLOW_SIGNING_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS", json.dumps([str(public), *old_public]))
    return private, public, old_public


def _version() -> tuple[str, str]:
    from sentiflow.settings.components import MLflowSettings
    from tests.devserver import register_tfidf_versions

    (version,) = register_tfidf_versions(1)  # signed with the stack's (old) key
    return MLflowSettings().registered_model_name, version


def test_a_resigned_version_verifies_with_the_new_key_alone(stack, new_key, tmp_path, capsys):
    from sentiflow import registry
    from sentiflow.security import approval
    from sentiflow.security.resign import main
    from sentiflow.security.stack_auth import signing_keys

    name, version = _version()
    _, public, old_public = new_key
    client = registry.mlflow_client()
    client.set_registered_model_alias(name, "resign-check", version)
    old_private, _ = signing_keys(stack.home)  # the stack's key, which signed the version's approval
    approved = approval.make(client.get_model_version(name, version), approved=True, reason="gate")
    payload, signature = approval.sign(approved, old_private)
    client.set_model_version_tag(name, version, TAG_APPROVAL, payload)
    client.set_model_version_tag(name, version, TAG_APPROVAL_SIGNATURE, signature)
    try:
        assert main(["--model", name, "--alias", "resign-check"]) == 0  # an alias names the version
        assert f"models:/{name}/{version}: re-signed" in capsys.readouterr().out
        local = download_version(f"models:/{name}/{version}", tmp_path / "after")
        assert verify_folder(local, [str(public)]) == 0
        with pytest.raises(SignatureError, match="invalid for all 1 configured"):
            verify_folder(local, old_public)
        # the approval too: the same statement, now verifying with the new key alone
        tags = client.get_model_version(name, version).tags
        assert approval.verify(tags[TAG_APPROVAL], tags[TAG_APPROVAL_SIGNATURE], [str(public)]) == approved
        with pytest.raises(SignatureError, match="invalid for all 1 public key"):
            approval.verify(tags[TAG_APPROVAL], tags[TAG_APPROVAL_SIGNATURE], old_public)
    finally:
        # signed by a key only this test trusts: other tests' servers (the fuzzer deploys any version
        # number) must not find it in the shared registry
        client.delete_model_version(name, version)


def test_a_tampered_version_is_not_resigned(new_key, tmp_path, capsys):
    from sentiflow.security.resign import main
    from tests.tamper import tampered_version

    name, version = _version()
    _, public, _ = new_key
    with tampered_version(name, version):
        assert main(["--model", name, "--version", version]) == 1
        assert "NOT re-signed" in capsys.readouterr().err
        local = download_version(f"models:/{name}/{version}", tmp_path / "after")
        with pytest.raises(SignatureError):
            verify_folder(local, [str(public)])  # still the old signature: nothing was laundered


def test_nothing_is_resigned_while_the_new_key_is_untrusted(new_key, monkeypatch, capsys):
    from sentiflow.security.resign import main

    _, _, old_public = new_key
    monkeypatch.setenv("SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS", json.dumps(old_public))
    with pytest.raises(SystemExit) as exit_info:
        main(["--version", "1"])
    assert exit_info.value.code == 2
    assert "not among SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS" in capsys.readouterr().err
