"""In-process pieces of a release: what "not found" means, and the inference check's filter."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from sentiflow import registry
from sentiflow.release.deploy import version_predict


@pytest.mark.parametrize(
    ("exc", "missing"),
    [
        (
            MlflowException("Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST),
            True,
        ),
        (
            MlflowException("Registered model alias champion not found.", error_code=INVALID_PARAMETER_VALUE),
            True,
        ),
        (
            MlflowException("max_results must be between 1 and 1000.", error_code=INVALID_PARAMETER_VALUE),
            False,
        ),
        (MlflowException("internal error", error_code=INTERNAL_ERROR), False),
        # a registry that cannot be reached is never "no champion", whatever its URL mentions
        (ConnectionError("GET /api/2.0/mlflow/registered-models/alias?alias=champion: refused"), False),
    ],
)
def test_not_found_is_only_the_registrys_own_answer(exc, missing):
    assert registry.is_not_found(exc) is missing


class _DownClient:
    def get_model_version_by_alias(self, name, alias):
        raise ConnectionError(f"cannot connect for alias {alias}")


def test_a_down_registry_raises_instead_of_reading_as_no_alias():
    from sentiflow.settings.components import MLflowSettings

    settings = MLflowSettings(tracking_uri="http://127.0.0.1:9")
    with pytest.raises(ConnectionError):
        registry.version_for_alias(_DownClient(), settings, "champion")
    with pytest.raises(registry.RegistryUnavailableError, match=r"127\.0\.0\.1:9"):
        registry.get_version(_DownClient(), settings, alias="champion")


@dataclass
class _Answer:
    model_version: str


class _Replicas:
    """Answers from the old version a few times (replicas that have not swapped yet), then the new one."""

    def __init__(self, old_answers: int) -> None:
        self.calls = 0
        self.old_answers = old_answers

    def predict(self, texts):
        self.calls += 1
        return _Answer("1" if self.calls <= self.old_answers else "2")


def test_the_inference_check_counts_only_answers_from_the_released_version():
    server = _Replicas(old_answers=3)
    assert version_predict(server, "2", pause_s=0)(["t"]).model_version == "2"
    assert server.calls == 4
    stuck = _Replicas(old_answers=100)
    assert version_predict(stuck, "2", attempts=5, pause_s=0)(["t"]).model_version == "1"  # fails on version
    assert stuck.calls == 5
