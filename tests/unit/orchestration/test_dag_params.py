"""The trigger form's training section is ``TrainParams``: same fields, defaults, titles, types and bounds.

The form is generated from the model's JSON schema (``sentiflow.orchestration.model_form``). These tests hold
the two equal by behaviour: for every field, values at and around each bound the model declares (read from the
model's pydantic constraints, not from the schema the form was built from) are accepted by the form's Param
exactly when the model accepts them. Airflow runs the same check (``Param.resolve``) when it creates a run.
"""

from __future__ import annotations

import copy
import json
import typing
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError
from pydantic import BaseModel, ValidationError

from sentiflow.families.transformer.params import TrainParams
from sentiflow.orchestration.dag_params import PIPELINE, SWEEP, dag_form
from sentiflow.orchestration.model_form import field_schema, params_from_model


def form_accepts(param: Any, value: Any) -> bool:
    try:
        copy.copy(param).resolve(value)  # resolve() stores the value: never on the DAG's own Param
    except ParamValidationError:
        return False
    return True


def model_accepts(name: str, value: Any) -> bool:
    try:
        TrainParams.model_validate({name: value})
    except ValidationError:
        return False
    return True


def probes(name: str) -> list[Any]:
    """Values that sit on, just inside and just outside every bound of the field, plus wrong types."""
    field = TrainParams.model_fields[name]
    types = {t for t in typing.get_args(field.annotation) or (field.annotation,) if t is not type(None)}
    values: list[Any] = [None, "not-a-value", 0, -1, 1, 0.5]
    if typing.get_origin(field.annotation) is typing.Literal:
        return [*values, *typing.get_args(field.annotation)]
    step = 1 if types == {int} else 1e-3
    for bound in field.metadata:
        for attr in ("gt", "ge", "lt", "le"):
            limit = getattr(bound, attr, None)
            if limit is not None:
                values += [limit - step, limit, limit + step]
    if str in types:
        values += ["", "x", 5]
    return values


def test_every_model_field_is_in_the_form_with_the_models_default_title_and_description() -> None:
    form = dag_form(SWEEP)
    defaults = TrainParams().model_dump(mode="json")
    for name, field in TrainParams.model_fields.items():
        param = form[name]
        assert param.value == defaults[name], name
        assert param.schema["title"] == field.title and param.description == field.description, name
        assert param.schema["section"] == "Training hyperparameters"
    # and the DAGs use this section as it is
    for dag_params in (dag_form(PIPELINE), dag_form(SWEEP)):
        assert {k: dag_params[k].value for k in TrainParams.model_fields} == defaults


@pytest.mark.parametrize("name", list(TrainParams.model_fields))
def test_form_and_model_accept_the_same_values(name: str) -> None:
    param = dag_form(SWEEP)[name]
    for value in probes(name):
        assert form_accepts(param, value) == model_accepts(name, value), (name, value, param.schema)


def test_warmup_ratio_bounds_agree() -> None:
    """The hand-written form once allowed at most 0.99 while the model allowed anything below 1."""
    param = dag_form(SWEEP)["warmup_ratio"]
    for value, accepted in ((0.995, True), (1.0, False), (0.0, True), (-0.01, False)):
        assert form_accepts(param, value) is accepted and model_accepts("warmup_ratio", value) is accepted


def test_form_default_model_follows_the_settings(monkeypatch) -> None:
    monkeypatch.setenv("SENTIFLOW_DEFAULT_MODEL_NAME", "/models/local-copy")
    assert dag_form(SWEEP)["model_name"].value == "/models/local-copy"


def test_checks_moved_out_of_validate_params_are_in_the_param_schemas() -> None:
    """``validate_params`` does not check these again: Airflow refuses them when it creates the run."""
    form = dag_form(PIPELINE)
    for name, bad in (
        ("selection_metric", "   "),
        ("min_improvement", -0.1),
        ("check_min_accuracy", 1.5),
        ("train_backend", "gpu"),
    ):
        assert not form_accepts(form[name], bad), name


def test_only_optional_unions_become_form_fields() -> None:
    class Odd(BaseModel):
        either: int | str = 1

    with pytest.raises(ValueError, match="either"):
        params_from_model(Odd, "x")
    nullable_enum = {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}
    assert field_schema("e", nullable_enum) == {"enum": [None, "a", "b"], "type": ["null", "string"]}


def test_family_params_read_every_model_field_and_train_extra_wins() -> None:
    from sentiflow.names import FAMILY_TRANSFORMER
    from sentiflow.orchestration.training_tasks import grid_points, validated

    conf = {k: p.value for k, p in dag_form(PIPELINE).items()}  # what a run's params hold
    conf.update(num_hidden_layers=2, attn_implementation="", train_extra={"bf16": "off"})
    transformer = validated(conf, PIPELINE)[FAMILY_TRANSFORMER]
    assert transformer["num_hidden_layers"] == 2 and transformer["bf16"] == "off"
    assert transformer["attn_implementation"] is None  # an emptied form field
    with pytest.raises(AirflowFailException, match="learnin_rate"):
        validated({**conf, "train_extra": {"learnin_rate": 1e-4}}, PIPELINE)

    sweep = {k: p.value for k, p in dag_form(SWEEP).items()}
    base = validated(sweep, SWEEP)[FAMILY_TRANSFORMER]
    points = grid_points(base, {"num_hidden_layers": [1, 2], "hidden_dropout": [0.1]})
    assert [p["num_hidden_layers"] for p in points] == [1, 2]
    with pytest.raises(AirflowFailException, match="learnin_rate"):
        grid_points(base, {"learnin_rate": [1e-4]})
    with pytest.raises(AirflowFailException, match="non-empty lists"):
        grid_points(base, {"learning_rate": []})


def test_every_group_of_each_dag_is_validated_from_the_forms_defaults() -> None:
    """``validate_params`` hands each task its group as the model; the form's defaults validate."""
    from sentiflow.orchestration.dag_params import GROUPS
    from sentiflow.orchestration.params import FeedbackParams, SelectionParams
    from sentiflow.orchestration.training_tasks import FEEDBACK, SEED, SELECTION, validated

    for dag, form in ((PIPELINE, dag_form(PIPELINE)), (SWEEP, dag_form(SWEEP))):
        out = validated({k: p.value for k, p in form.items()}, dag)
        assert out[SEED] == TrainParams().seed
        assert set(form) == {f for model, _ in GROUPS[dag] for f in model.model_fields}
    pipeline = validated({k: p.value for k, p in dag_form(PIPELINE).items()}, PIPELINE)
    feedback, selection = pipeline[FEEDBACK], pipeline[SELECTION]
    assert isinstance(feedback, FeedbackParams) and feedback.use_feedback is True  # one default
    assert isinstance(selection, SelectionParams)
    assert selection.confidence == 0.95 and selection.selection_scope == "this_run"
    emptied = {
        **{k: p.value for k, p in dag_form(PIPELINE).items()},
        "min_metric_value": "",
        "dataset_config": "",
    }
    assert validated(emptied, PIPELINE)[SELECTION].min_metric_value is None


def test_each_group_crosses_xcom_as_its_model() -> None:
    """What a task receives is what validate_params returned: Airflow's serde, through the JSON it stores."""
    from airflow.sdk.serde import deserialize, serialize

    from sentiflow.orchestration.training_tasks import validated

    for dag, form in ((PIPELINE, dag_form(PIPELINE)), (SWEEP, dag_form(SWEEP))):
        for value in validated({k: p.value for k, p in form.items()}, dag).values():
            received = deserialize(json.loads(json.dumps(serialize(value))))
            assert type(received) is type(value) and received == value


def test_every_form_section_follows_its_model() -> None:
    """Each group's fields are in the form with the model's default, title and description."""
    from sentiflow.orchestration.dag_params import GROUPS

    for dag, form in ((PIPELINE, dag_form(PIPELINE)), (SWEEP, dag_form(SWEEP))):
        for model, section in GROUPS[dag]:
            defaults = model().model_dump(mode="json")
            for name, field in model.model_fields.items():
                param = form[name]
                assert param.value == defaults[name] and param.schema["section"] == section, name
                assert param.schema["title"] == field.title and param.description == field.description, name
