"""``sentiment_release``'s trigger form and the validation of a manual release's request.

The form is generated from ``ReleaseRequest``/``ReleasePolicy``/``CheckParams``/``CheckSeed``
(``dag_params``); the conf keys are the contract with the model server (``sentiflow.names``).
``force_promote`` without a written ``force_reason`` is refused before anything runs (``ReleaseOrder``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError
from airflow.sdk.serde import deserialize, serialize
from pydantic import ValidationError

from sentiflow import names
from sentiflow.orchestration.dag_params import GROUPS, RELEASE, dag_form
from sentiflow.orchestration.params import ReleaseOrder, ReleasePolicy, ReleaseRequest, SelectionParams
from sentiflow.orchestration.release_request import REQUEST, validated_release
from sentiflow.orchestration.training_tasks import CHECK, SEED, SELECTION
from sentiflow.release.check_plan import CheckParams


def resolves(param: Any, value: Any = None) -> bool:
    try:
        copy.copy(param).resolve() if value is None else copy.copy(param).resolve(value)
    except ParamValidationError:
        return False
    return True


def test_the_form_asks_for_the_version_and_the_requester_under_the_contracts_names() -> None:
    form = dag_form(RELEASE)
    contract = (names.RELEASE_VERSION, names.RELEASE_REQUESTED_BY, names.FORCE_PROMOTE, names.FORCE_REASON)
    assert set(contract) <= set(form)
    assert set(form) == {f for model, _ in GROUPS[RELEASE] for f in model.model_fields}
    assert "selection_scope" not in form  # the release's one version is the only candidate
    version, requested_by = form[names.RELEASE_VERSION], form[names.RELEASE_REQUESTED_BY]
    # no default: a trigger without them is refused when Airflow creates the run
    assert not resolves(version) and not resolves(requested_by)
    assert resolves(version, "4") and resolves(version, "12")
    assert not resolves(version, "v4") and not resolves(version, "") and not resolves(version, 4)
    assert resolves(requested_by, "alice") and not resolves(requested_by, "  ")
    assert form[names.FORCE_PROMOTE].value is False and form[names.FORCE_REASON].value is None
    assert form["seed"].value == names.DEFAULT_SEED and form["check_cases_per_class"].value == 4


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_force_promote_without_a_written_reason_is_refused_naming_force_reason(reason: str | None) -> None:
    request = ReleaseRequest(version="4", requested_by="alice", force_reason=reason)
    with pytest.raises(ValidationError, match=names.FORCE_REASON):
        ReleaseOrder(request=request, policy=ReleasePolicy(force_promote=True))
    # unforced, the same request is valid
    assert ReleaseOrder(request=request, policy=ReleasePolicy()).policy.force_promote is False


def test_a_request_validates_into_the_pipelines_groups() -> None:
    conf = {
        names.RELEASE_VERSION: "4",
        names.RELEASE_REQUESTED_BY: "alice",
        names.FORCE_PROMOTE: True,
        names.FORCE_REASON: "roll back: version 5 mislabels sarcasm",
        "selection_metric": names.VAL_F1,
        "check_cases_per_class": 0,
        "check_texts": [{"text": "great", "label": "positive"}],
        "seed": 7,
        "min_metric_value": "",  # the form's emptied optional field
    }
    params = {**{k: p.value for k, p in dag_form(RELEASE).items()}, **conf}
    out = {k: deserialize(json.loads(json.dumps(serialize(v)))) for k, v in validated_release(params).items()}
    request, selection, check = out[REQUEST], out[SELECTION], out[CHECK]  # as the tasks receive them
    assert isinstance(request, ReleaseRequest) and (request.version, request.requested_by) == ("4", "alice")
    assert isinstance(selection, SelectionParams) and selection.selection_scope == "this_run"
    assert selection.force_promote is True
    assert selection.selection_metric == names.VAL_F1 and selection.min_metric_value is None
    assert isinstance(check, CheckParams) and check.check_cases_per_class == 0 and out[SEED] == 7
    with pytest.raises(AirflowFailException, match=names.FORCE_REASON):
        validated_release({**params, names.FORCE_REASON: None})
    with pytest.raises(AirflowFailException, match=names.RELEASE_REQUESTED_BY):
        validated_release({k: v for k, v in params.items() if k != names.RELEASE_REQUESTED_BY})
