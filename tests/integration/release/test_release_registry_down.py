"""The release when the registry read fails: the caller gets the registry's error, never a crash of ours.

``release.promote`` first reads the registered model's tags (the recorded starting point of a release in
progress). "No such model" means nothing is recorded; any other failure (MLflow down, an error answer) must
propagate as it is, so the task's log says what is wrong with the registry. A renamed helper once turned
that read's failure into ``AttributeError`` and nothing noticed: these tests go through the real MLflow server
of ``tests/conftest.py`` and a tracking URI where nothing listens.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

from sentiflow import registry
from sentiflow.names import TAG_RELEASE_PRIOR_ALIASES
from sentiflow.release import flow as release
from sentiflow.settings.components import MLflowSettings

DEAD = "http://127.0.0.1:9"  # nothing listens on port 9


def test_an_unreachable_registry_fails_the_promotion_with_the_registrys_error(stack, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings = MLflowSettings(tracking_uri=DEAD, registered_model_name=f"down-{uuid.uuid4().hex[:8]}")
    client = registry.mlflow_client(settings)
    with pytest.raises(MlflowException) as caught:
        release.promote(client, settings, "1")
    assert not registry.is_not_found(caught.value)
    assert "127.0.0.1:9" in str(caught.value)


class _FailingReads:
    """The real client of the stack's MLflow server, whose registered-model read answers an error."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def get_registered_model(self, name: str) -> Any:
        self.real.get_registered_model(name)  # the real call first: the model exists, the server answers
        raise MlflowException("the registry's database is unavailable", error_code=INTERNAL_ERROR)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_registry_error_answer_propagates_and_moves_nothing(stack) -> None:
    settings = MLflowSettings(registered_model_name=f"erroring-{uuid.uuid4().hex[:8]}")
    real = registry.mlflow_client(settings)
    real.create_registered_model(settings.registered_model_name)
    with pytest.raises(MlflowException, match="database is unavailable"):
        release.promote(_FailingReads(real), settings, "1")
    model = real.get_registered_model(settings.registered_model_name)
    assert TAG_RELEASE_PRIOR_ALIASES not in (model.tags or {}) and not model.aliases


def test_a_model_the_registry_does_not_know_has_no_release_in_progress(stack) -> None:
    """The real server's "not found" answer is the one failure that reads as "nothing recorded".

    Asked as the admin: with authentication on, MLflow answers an identity without rights on a name it does
    not know with 403 (the permission check comes first), which is not "not found" and must not read as it.
    """
    from sentiflow.security import stack_auth
    from sentiflow.security.mlflow_auth import client_for

    settings = MLflowSettings(registered_model_name=f"unknown-{uuid.uuid4().hex[:8]}")
    client = client_for(settings.tracking_uri, stack_auth.admin(stack.home))
    assert release.pending(client, settings) is None
