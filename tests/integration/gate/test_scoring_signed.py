"""The gate loads the champion and the challenger as a replica does: signed versions score, a version whose
files were overwritten in S3 (or that was never signed) is refused before anything is unpickled.

``select_best`` runs in the pipeline's own process, which holds the signing key; scoring an overwritten
pickle there would hand its author the key. Real MLflow and S3 of the session's stack.
"""

from __future__ import annotations

import pytest

from sentiflow import registry
from sentiflow.gate.scoring import score_model
from sentiflow.security.signing import SIGNATURE_FILE, SignatureError
from tests.devserver import own_registered_model, register_tfidf_versions, register_unfitted_version
from tests.tamper import tampered_version

TEXTS = ["a wonderful moving film", "dull and boring"]


@pytest.fixture(scope="module")
def versions(stack):
    with own_registered_model("gate-signed") as name:
        signed = register_tfidf_versions(1)[0]
        unsigned = register_unfitted_version()  # plain mlflow.pyfunc.log_model: no signature
        yield {"name": name, "signed": signed, "unsigned": unsigned, "client": registry.mlflow_client()}


def test_a_signed_version_is_scored(versions):
    scored = score_model(versions["client"], f"models:/{versions['name']}/{versions['signed']}", TEXTS)
    assert scored.label_names == ["negative", "positive"]
    assert scored.probs.shape == (2, 2)


def test_an_overwritten_version_is_refused_before_it_is_unpickled(versions):
    name, version = versions["name"], versions["signed"]
    with (
        tampered_version(name, version),
        pytest.raises(SignatureError, match=rf"{SIGNATURE_FILE} does not match.*python_model.pkl"),
    ):
        score_model(versions["client"], f"models:/{name}/{version}", TEXTS)


def test_an_unsigned_version_is_refused(versions):
    uri = f"models:/{versions['name']}/{versions['unsigned']}"
    with pytest.raises(SignatureError, match="has no signature"):
        score_model(versions["client"], uri, TEXTS)
