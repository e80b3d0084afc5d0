"""Airflow tasks of the training stage: the trigger's parameters validated into training params JSON, local
training (transformer and TF-IDF baseline) and the KubernetesPodOperator GPU pods (one, or mapped over a
grid). Each training result is the entrypoint's JSON (run id, registry version, metrics) in XCom.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from sentiflow.names import FAMILY_TFIDF, FAMILY_TRANSFORMER
from sentiflow.orchestration.connections import settings_env
from sentiflow.orchestration.dag_params import unknown_params
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.orchestration.task_context import (
    log,
    mlflow_settings,
    optional,
    s3_settings,
    trigger_params,
)


# --- parameters ----------------------------------------------------------------------------------------
def training_params(params: dict[str, Any]) -> dict[str, str]:
    """Validate the trigger's hyperparameters with the training package's models; JSON per family.

    Fails the run in its first task, with pydantic's message naming the bad field, before any data is
    collected or any GPU is requested.
    """
    from sentiflow.train.params import BaselineParams, TrainParams

    transformer = {k: optional(params.get(k)) for k in TrainParams.model_fields if k in params}
    transformer.update(params.get("train_extra") or {})
    baseline = {"seed": params.get("seed", 42), **(params.get("baseline_params") or {})}
    try:
        tp = TrainParams.model_validate(transformer)
        bp = BaselineParams.model_validate(baseline)
    except ValueError as exc:
        raise AirflowFailException(f"invalid training parameters: {exc}") from exc
    return {FAMILY_TRANSFORMER: tp.model_dump_json(), FAMILY_TFIDF: bp.model_dump_json()}


@task(task_id="validate_params", retries=0, multiple_outputs=True)
def validate_params() -> dict[str, str]:
    """Check what the param schemas cannot, before anything runs; returns the training params JSON per family.

    ``multiple_outputs``: each family's JSON is an XCom of its own, so the DAG wires
    ``params[FAMILY_TRANSFORMER]`` into exactly the tasks that train that family.

    Types, bounds and enums of each param are checked by Airflow when it creates the run (the form's JSON
    schema, generated from ``TrainParams`` for training). Left here: keys the DAG does not declare (Airflow
    accepts them silently), switches that only fail together, and the free-form ``train_extra`` /
    ``baseline_params`` objects, validated by the training package's models.
    """
    params = trigger_params()
    context = get_current_context()
    unknown = unknown_params(context["dag_run"].conf or {}, context["dag"].params.keys())
    if unknown:
        raise AirflowFailException(
            f"unknown parameter(s) {unknown} in the trigger's conf; this DAG's parameters are "
            f"{sorted(context['dag'].params.keys())}"
        )
    if not params.get("train_transformer", True) and not params.get("run_baseline", True):
        raise AirflowFailException("train_transformer and run_baseline are both off: nothing to train")
    return training_params(params)


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


@task(task_id="train_baseline", execution_timeout=timedelta(hours=1), retries=0)
def train_baseline(manifest_uri: str, params_json: str) -> dict[str, Any]:
    """TF-IDF + logistic regression, registered in the same model so selection compares families."""
    return train_locally(manifest_uri, FAMILY_TFIDF, params_json)


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


def grid_points(params: dict[str, Any]) -> list[str]:
    """Every combination of the ``grid`` param over the base hyperparameters, validated, as params JSON."""
    import itertools

    grid = params.get("grid") or {}
    if not isinstance(grid, dict) or not grid:
        raise AirflowFailException("grid must be an object: hyperparameter name -> list of values")
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if bad:
        raise AirflowFailException(f"grid values must be non-empty lists; not for {bad}")
    from sentiflow.train.params import TrainParams

    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = {**params, **dict(zip(keys, combo, strict=True))}
        extra = {k: v for k, v in point.items() if k not in TrainParams.model_fields and k in keys}
        point["train_extra"] = {**(params.get("train_extra") or {}), **extra}
        points.append(training_params(point)[FAMILY_TRANSFORMER])
    return points
