"""Verification fails closed: with no public key a version is not loaded, outside the development switch."""

from __future__ import annotations

import mlflow.pyfunc
import pytest
from mlflow.entities.model_registry import ModelVersion

from sentiflow.security.signing import SignatureError, load_for_serving

URI = "models:/unsigned/1"
VERSION = ModelVersion("unsigned", "1", creation_timestamp=0)


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [1] * len(model_input)


@pytest.fixture(scope="module")
def unsigned_folder(tmp_path_factory):
    """A loadable pyfunc folder that carries no signature: what a tampered or foreign version looks like."""
    folder = tmp_path_factory.mktemp("unsigned") / "model"
    mlflow.pyfunc.save_model(str(folder), python_model=_Constant(), pip_requirements=[])
    return folder


def test_no_public_key_means_no_load(unsigned_folder, monkeypatch):
    monkeypatch.setenv("SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS", "[]")
    monkeypatch.delenv("SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS", raising=False)
    with pytest.raises(SignatureError, match=r"no public key configured.*SENTIFLOW_SERVER_ALLOW_UNSIGNED"):
        load_for_serving(URI, VERSION, unsigned_folder)
    with pytest.raises(SignatureError, match="no public key configured"):
        load_for_serving(URI, VERSION, unsigned_folder, [""])  # an empty entry is no key either


def test_the_development_switch_loads_unverified_and_says_so(unsigned_folder, monkeypatch, caplog):
    monkeypatch.setenv("SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS", "[]")
    monkeypatch.setenv("SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS", "true")
    with caplog.at_level("WARNING", logger="sentiflow.security.signing"):
        model = load_for_serving(URI, VERSION, unsigned_folder)
    assert list(model.predict(["a", "b"])) == [1, 1]
    assert "WITHOUT verifying a signature" in caplog.text
    with pytest.raises(SignatureError, match="no public key configured"):
        load_for_serving(URI, VERSION, unsigned_folder, [], allow_unsigned=False)  # the caller's word wins


def test_a_configured_key_still_refuses_an_unsigned_folder_whatever_the_switch(unsigned_folder):
    key = "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"
    with pytest.raises(SignatureError, match="has no signature"):
        load_for_serving(URI, VERSION, unsigned_folder, [key], allow_unsigned=True)
