"""Airflow tasks of the training stage: the trigger's parameters validated into each family's params, local
training (one task per family of the catalogue) and the KubernetesPodOperator GPU pods (one, or mapped over a
grid). Each training result is the entrypoint's JSON (run id, registry version, metrics) in XCom.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from pydantic import BaseModel

from sentiflow.families.catalogue import ModelFamily, families, family
from sentiflow.families.transformer.params import TrainParams
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.orchestration.dag_params import GROUPS, PIPELINE, unknown_params
from sentiflow.orchestration.model_form import model_from_params
from sentiflow.orchestration.params import (
    DatasetParams,
    FeedbackParams,
    PipelineTraining,
    SelectionParams,
    SweepTraining,
)
from sentiflow.release.check_plan import CheckParams

# --- parameters ----------------------------------------------------------------------------------------
#: ``validate_params``' outputs beside each family's params (a dict, by family name): each group's model, the
#: families switched on, and the run's seed (``TrainParams.seed``, the one the data steps and the check
#: sample with).
DATASET, FEEDBACK, TRAINING, SELECTION, CHECK, SEED, FAMILIES = (
    "dataset",
    "feedback",
    "training",
    "selection",
    "check",
    "seed",
    "families",
)
_OUTPUTS: dict[type[BaseModel], str] = {
    DatasetParams: DATASET,
    FeedbackParams: FEEDBACK,
    PipelineTraining: TRAINING,
    SweepTraining: TRAINING,
    SelectionParams: SELECTION,
    CheckParams: CHECK,
}


def validated(params: Mapping[str, Any], dag: str) -> dict[str, Any]:
    """Every parameter group of ``dag`` (``dag_params.GROUPS``) validated from a run's params: the model
    per group, the families to train, the run's seed and each family's params (a dict, by family name).

    Each group is validated once, then handed on: a family's params are built from its validated groups
    (``ModelFamily.params_from_form``); the sweep trains the transformer alone. Every family trains with the
    run's seed (``TrainParams.seed``) unless it names its own. A bad value fails the run in its first task,
    with pydantic's message naming the field, before any data is collected or any GPU is requested.
    """
    entries = families() if dag == PIPELINE else {FAMILY_TRANSFORMER: family(FAMILY_TRANSFORMER)}
    models = [model for model, _section in GROUPS[dag]] + [f for e in entries.values() for f in e.form]
    try:
        forms = {model: model_from_params(model, params) for model in dict.fromkeys(models)}
    except ValueError as exc:
        raise AirflowFailException(f"invalid parameters: {exc}") from exc
    out: dict[str, Any] = {_OUTPUTS[model]: form for model, form in forms.items() if model in _OUTPUTS}
    out[SEED] = cast(TrainParams, forms[TrainParams]).seed
    # the families whose switch (``ModelFamily.switch``) is on, in catalogue order
    out[FAMILIES] = [
        e.name for e in entries.values() if any(getattr(forms[f], e.switch, None) is True for f in e.form)
    ]
    try:
        for entry in entries.values():
            assert entry.params_from_form is not None, f"family {entry.name} has no form"
            params_model = entry.params_from_form([forms[f] for f in entry.form], out[SEED])
            out[entry.name] = params_model.model_dump(mode="json")
    except ValueError as exc:
        raise AirflowFailException(f"invalid training parameters: {exc}") from exc
    return out


def refuse_unknown_conf(context: Any) -> None:
    """Fail the run on conf keys the DAG does not declare: Airflow accepts them silently."""
    declared = context["dag"].params.keys()
    unknown = unknown_params(context["dag_run"].conf or {}, declared)
    if unknown:
        raise AirflowFailException(
            f"unknown parameter(s) {unknown} in the trigger's conf; this DAG's parameters are "
            f"{sorted(declared)}"
        )


@task(task_id="validate_params", retries=0, multiple_outputs=True)
def validate_params(form: str) -> dict[str, Any]:
    """Check what the param schemas cannot, before anything runs; returns each parameter group, typed.

    ``form``: which DAG's groups (``dag_params.PIPELINE`` or ``SWEEP``; not ``dag``: Airflow refuses a
    parameter named like a context key when the task runs). ``multiple_outputs``: each group's model is an
    XCom of its own (``params[DATASET]``, ``params[FAMILY_TRANSFORMER]``...), so the DAG wires each group
    into exactly the tasks that use it.

    Types, bounds and enums of each param are checked by Airflow when it creates the run (the form's JSON
    schema, generated from the same models). Left here: keys the DAG does not declare (Airflow accepts them
    silently), switches that only fail together, and the families' free-form objects (``train_extra``,
    ``baseline_params``), validated by each family's params model.
    """
    context = get_current_context()
    refuse_unknown_conf(context)
    out = validated(context["params"], form)
    if not out[FAMILIES]:
        switches = " and ".join(entry.switch for entry in families().values())
        raise AirflowFailException(f"{switches} are all off: nothing to train")
    return out


# --- training ------------------------------------------------------------------------------------------
def train_family(entry: ModelFamily) -> Any:
    """The local training task of one family (task id ``entry.task_id``, e.g. ``train_baseline``): the
    entrypoint in a child process (``local_train.train_locally``); the DAG passes ``family=entry.name``.
    Every family registers in the same model, so selection compares families."""
    from sentiflow.orchestration.local_train import train_locally

    hours = 6 if entry.gpu else 1
    return task(task_id=entry.task_id, execution_timeout=timedelta(hours=hours), retries=0)(train_locally)


def trainer_pod(task_id: str, manifest_uri: Any, params: Any) -> Any:
    """The KubernetesPodOperator that trains the transformer on a GPU node.

    ``manifest_uri`` and ``params`` (a dict) are usually upstream tasks' outputs (XComArgs). Each becomes
    the Jinja template Airflow itself derives from it (``str(xcom_arg)``; the params through ``tojson``),
    rendered when the pod starts, and its task is set upstream of the pod. Templates rather than the
    XComArgs in ``arguments``: the pod spec must stay printable without a run (``dry_run()`` dumps it as
    YAML, and cannot dump an XComArg).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import XComArg

    from sentiflow.orchestration.pod import train_arguments, trainer_pod_kwargs

    inputs = [manifest_uri, params]
    manifest = str(manifest_uri) if isinstance(manifest_uri, XComArg) else manifest_uri
    if isinstance(params, XComArg):
        params_json = str(params).removesuffix(" }}") + " | tojson }}"
    else:
        params_json = json.dumps(params)
    arguments = train_arguments(manifest, FAMILY_TRANSFORMER, params_json)
    operator = KubernetesPodOperator(task_id=task_id, **trainer_pod_kwargs(arguments=arguments))
    for value in inputs:
        if isinstance(value, XComArg):
            value >> operator
    return operator


def trainer_pods_mapped(task_id: str, arguments: Any) -> Any:
    """One training pod per element of ``arguments`` (dynamic task mapping, for the sweep)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from sentiflow.orchestration.pod import trainer_pod_kwargs

    kwargs = trainer_pod_kwargs(arguments=[])
    kwargs.pop("arguments")
    return KubernetesPodOperator.partial(task_id=task_id, **kwargs).expand(arguments=arguments)


def grid_points(base: Mapping[str, Any], grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of ``grid`` over the base training params, validated, as dicts."""
    import itertools

    if not isinstance(grid, Mapping) or not grid:
        raise AirflowFailException("grid must be an object: hyperparameter name -> list of values")
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if bad:
        raise AirflowFailException(f"grid values must be non-empty lists; not for {bad}")
    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        try:
            point = TrainParams.model_validate({**base, **dict(zip(keys, combo, strict=True))})
        except ValueError as exc:
            raise AirflowFailException(f"invalid training parameters: {exc}") from exc
        points.append(point.model_dump(mode="json"))
    return points
