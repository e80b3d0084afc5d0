"""Airflow tasks of the training stage: the trigger's parameters validated into training params JSON, local
training (transformer and TF-IDF baseline) and the KubernetesPodOperator GPU pods (one, or mapped over a
grid). Each training result is the entrypoint's JSON (run id, registry version, metrics) in XCom.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from pydantic import BaseModel

from sentiflow.families.catalogue import ModelFamily, families
from sentiflow.names import FAMILY_TFIDF, FAMILY_TRANSFORMER
from sentiflow.orchestration.connections import settings_env
from sentiflow.orchestration.dag_params import GROUPS, PIPELINE, unknown_params
from sentiflow.orchestration.model_form import model_from_params
from sentiflow.orchestration.params import (
    DatasetParams,
    FeedbackParams,
    PipelineTraining,
    SelectionParams,
    SweepTraining,
)
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.orchestration.task_context import log, mlflow_settings, s3_settings
from sentiflow.release.check_plan import CheckParams
from sentiflow.train.params import TrainParams

# --- parameters ----------------------------------------------------------------------------------------
#: ``validate_params``' outputs beside the two families' training params JSON (``FAMILY_*``): each group's
#: model, and the run's seed (``TrainParams.seed``, the one the data steps and the check sample with).
DATASET, FEEDBACK, TRAINING, SELECTION, CHECK, SEED = (
    "dataset",
    "feedback",
    "training",
    "selection",
    "check",
    "seed",
)
_OUTPUTS: dict[type[BaseModel], str] = {
    DatasetParams: DATASET,
    FeedbackParams: FEEDBACK,
    PipelineTraining: TRAINING,
    SweepTraining: TRAINING,
    SelectionParams: SELECTION,
    CheckParams: CHECK,
}


def training_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Validate the trigger's hyperparameters with each family's params model; JSON per family.

    The transformer's come from the form's fields (``train_extra`` wins); ``baseline_params`` are the
    TF-IDF baseline's; every other family (``sentiflow.families``) trains with its defaults. All train with
    the transformer's seed. Fails the run in its first task, with pydantic's message naming the bad field,
    before any data is collected or any GPU is requested.
    """
    try:
        options = model_from_params(PipelineTraining, params)
        values = model_from_params(TrainParams, params).model_dump(exclude_unset=True)
        tp = TrainParams.model_validate({**values, **options.train_extra})
        out = {FAMILY_TRANSFORMER: tp.model_dump_json()}
        for entry in families().values():
            if entry.name == FAMILY_TRANSFORMER:
                continue
            raw = dict(options.baseline_params) if entry.name == FAMILY_TFIDF else {}
            if "seed" in entry.params.model_fields:
                raw = {"seed": tp.seed, **raw}
            out[entry.name] = entry.parse_params(raw).model_dump_json()
    except ValueError as exc:
        raise AirflowFailException(f"invalid training parameters: {exc}") from exc
    return out


def validated(params: Mapping[str, Any], dag: str) -> dict[str, Any]:
    """Every parameter group of ``dag`` (``dag_params.GROUPS``) validated from a run's params: the model
    per group, the training params JSON per family and the seed."""
    out: dict[str, Any] = training_params(params)
    for model, _section in GROUPS[dag]:
        if model is TrainParams:
            continue
        try:
            out[_OUTPUTS[model]] = model_from_params(model, params)
        except ValueError as exc:
            raise AirflowFailException(f"invalid parameters: {exc}") from exc
    out[SEED] = TrainParams.model_validate_json(out[FAMILY_TRANSFORMER]).seed
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
    silently), switches that only fail together, and the free-form ``train_extra`` / ``baseline_params``
    objects, validated by the training package's models.
    """
    context = get_current_context()
    refuse_unknown_conf(context)
    out = validated(context["params"], form)
    if form == PIPELINE:
        switches: PipelineTraining = out[TRAINING]
        if not switches.train_transformer and not switches.run_baseline:
            raise AirflowFailException("train_transformer and run_baseline are both off: nothing to train")
    return out


# --- training ------------------------------------------------------------------------------------------
def train_locally(manifest_uri: str, family: str, params_json: str) -> dict[str, Any]:
    from sentiflow.orchestration.local_train import LocalTrainingError, run_local_training

    pipeline = PipelineSettings()
    env = settings_env(s3_settings(pipeline), mlflow_settings(pipeline))
    try:
        result = run_local_training(
            manifest_uri, family, params_json, env=env, timeout_s=pipeline.local_train_timeout_s, log=log.info
        )
    except LocalTrainingError as exc:
        raise AirflowFailException(str(exc)) from exc  # a failed run changed nothing; retrying won't help
    log.info("run %s registered version %s", result.get("run_id"), result.get("model_version"))
    return result


@task(task_id="train_local", execution_timeout=timedelta(hours=6), retries=0)
def train_local(manifest_uri: str, params_json: str) -> dict[str, Any]:
    """Fine-tune the transformer on this worker (same entrypoint as the pod)."""
    return train_locally(manifest_uri, FAMILY_TRANSFORMER, params_json)


def cpu_families() -> list[ModelFamily]:
    """The families trained beside the transformer when ``run_baseline`` is on (every non-GPU family)."""
    return [entry for entry in families().values() if not entry.gpu]


def train_family(entry: ModelFamily) -> Any:
    """The local training task of one CPU family (task id ``entry.task_id``, e.g. ``train_baseline``):
    registered in the same model, so selection compares families."""

    @task(task_id=entry.task_id, execution_timeout=timedelta(hours=1), retries=0)
    def train(manifest_uri: str, params_json: str) -> dict[str, Any]:
        return train_locally(manifest_uri, entry.name, params_json)

    train.__doc__ = f"Train the {entry.name} family on this worker: {entry.run.__module__}."
    return train


def trainer_pod(task_id: str, manifest_uri: Any, params_json: Any, **overrides: Any) -> Any:
    """The KubernetesPodOperator that trains the transformer on a GPU node; ``overrides`` win.

    ``manifest_uri`` and ``params_json`` are usually upstream tasks' outputs (XComArgs). Each becomes the
    Jinja template Airflow itself derives from it (``str(xcom_arg)``), rendered when the pod starts, and
    its task is set upstream of the pod. Templates rather than the XComArgs in ``arguments``: the pod
    spec must stay printable without a run (``dry_run()`` dumps it as YAML, and cannot dump an XComArg).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import XComArg

    from sentiflow.orchestration.pod import train_arguments, trainer_pod_kwargs
    from sentiflow.orchestration.settings import TrainerPodSettings

    pod = TrainerPodSettings()
    inputs = [manifest_uri, params_json]
    manifest, params = (str(v) if isinstance(v, XComArg) else v for v in inputs)
    kwargs = trainer_pod_kwargs(arguments=train_arguments(manifest, FAMILY_TRANSFORMER, params), pod=pod)
    kwargs.update(overrides)
    operator = KubernetesPodOperator(
        task_id=task_id, execution_timeout=timedelta(seconds=pod.execution_timeout_s), retries=1, **kwargs
    )
    for value in inputs:
        if isinstance(value, XComArg):
            value >> operator
    return operator


def trainer_pods_mapped(task_id: str, arguments: Any) -> Any:
    """One training pod per element of ``arguments`` (dynamic task mapping, for the sweep)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from sentiflow.orchestration.pod import trainer_pod_kwargs
    from sentiflow.orchestration.settings import TrainerPodSettings

    pod = TrainerPodSettings()
    kwargs = trainer_pod_kwargs(arguments=[], pod=pod)
    kwargs.pop("arguments")
    return KubernetesPodOperator.partial(
        task_id=task_id, execution_timeout=timedelta(seconds=pod.execution_timeout_s), retries=1, **kwargs
    ).expand(arguments=arguments)


def grid_points(base_json: str, grid: Mapping[str, Any]) -> list[str]:
    """Every combination of ``grid`` over the base training params (``base_json``), validated, as JSON."""
    import itertools

    if not isinstance(grid, Mapping) or not grid:
        raise AirflowFailException("grid must be an object: hyperparameter name -> list of values")
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if bad:
        raise AirflowFailException(f"grid values must be non-empty lists; not for {bad}")
    base = TrainParams.model_validate_json(base_json).model_dump()
    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        try:
            point = TrainParams.model_validate({**base, **dict(zip(keys, combo, strict=True))})
        except ValueError as exc:
            raise AirflowFailException(f"invalid training parameters: {exc}") from exc
        points.append(point.model_dump_json())
    return points
