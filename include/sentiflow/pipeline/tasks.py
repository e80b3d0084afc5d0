"""Airflow task callables shared by ``sentiment_pipeline`` and ``sentiment_sweep``.

The DAG files only wire these together. Each task turns Airflow connections into library settings, calls
the library, and returns S3 URIs, run ids and versions (never data) for XCom. Heavy libraries (mlflow,
pandas, torch) are imported inside the task bodies, so parsing a DAG stays cheap.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, BaseHook, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from sentiflow.config import MLflowSettings, S3Settings
from sentiflow.names import FAMILY_TFIDF, FAMILY_TRANSFORMER
from sentiflow.pipeline.connections import (
    ServerEndpoint,
    mlflow_settings_from,
    s3_settings_from,
    server_endpoint_from,
    settings_env,
)
from sentiflow.pipeline.dag_params import unknown_params
from sentiflow.pipeline.settings import PipelineSettings

log = logging.getLogger("sentiflow.pipeline")

# --- Assets: what the pipeline produces, for lineage and asset-triggered DAGs -------------------------
RAW_SNAPSHOT = Asset(name="sentiflow_raw_snapshot", uri="x-sentiflow://snapshots/raw")
CLEAN_SNAPSHOT = Asset(name="sentiflow_clean_snapshot", uri="x-sentiflow://snapshots/clean")
CHAMPION_MODEL = Asset(name="sentiflow_champion_model", uri="x-sentiflow://models/champion")

#: Task ids the branch tasks return; fixed so both DAGs share the tail.
PROMOTE, KEEP_CHAMPION = "promote", "keep_champion"

IO_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": True}


# --- connections → settings ---------------------------------------------------------------------------
def s3_settings(pipeline: PipelineSettings) -> S3Settings:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    config = AwsBaseHook(aws_conn_id=pipeline.s3_conn_id, client_type="s3").conn_config
    return s3_settings_from(
        access_key_id=config.aws_access_key_id,
        secret_access_key=config.aws_secret_access_key,
        endpoint_url=config.endpoint_url,
        region_name=config.region_name,
        bucket=config.extra_config.get("bucket"),
    )


def mlflow_settings(pipeline: PipelineSettings) -> MLflowSettings:
    settings = mlflow_settings_from(BaseHook.get_connection(pipeline.mlflow_conn_id), pipeline.mlflow_conn_id)
    name = _registered_model_param()
    return settings.model_copy(update={"registered_model_name": name}) if name else settings


def _registered_model_param() -> str | None:
    """The run's ``registered_model_name`` (one Airflow, several models); None outside a task or unset."""
    try:
        return _optional(get_current_context()["params"].get("registered_model_name"))
    except Exception:  # no task context (a library call, a test)
        return None


def server_endpoint(pipeline: PipelineSettings) -> ServerEndpoint:
    return server_endpoint_from(BaseHook.get_connection(pipeline.server_conn_id), pipeline.server_conn_id)


def _store(pipeline: PipelineSettings) -> Any:
    from sentiflow.storage import ObjectStore

    return ObjectStore(s3_settings(pipeline))


def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


def _optional(value: Any) -> Any:
    """UI forms send "" for an empty optional field; the library wants None."""
    return None if value in ("", None) else value


# --- parameters ----------------------------------------------------------------------------------------
def training_params(params: dict[str, Any]) -> dict[str, str]:
    """Validate the trigger's hyperparameters with the training package's models; JSON per family.

    Fails the run in its first task, with pydantic's message naming the bad field, before any data is
    collected or any GPU is requested.
    """
    from sentiflow.train.params import BaselineParams, TrainParams

    transformer = {k: _optional(params.get(k)) for k in TrainParams.model_fields if k in params}
    transformer.update(params.get("train_extra") or {})
    baseline = {"seed": params.get("seed", 42), **(params.get("baseline_params") or {})}
    try:
        tp = TrainParams.model_validate(transformer)
        bp = BaselineParams.model_validate(baseline)
    except ValueError as exc:
        raise AirflowFailException(f"invalid training parameters: {exc}") from exc
    return {FAMILY_TRANSFORMER: tp.model_dump_json(), FAMILY_TFIDF: bp.model_dump_json()}


@task(task_id="validate_params", retries=0)
def validate_params() -> dict[str, str]:
    """Check what the param schemas cannot, before anything runs; returns the training params JSON per family.

    Types, bounds and enums of each param are checked by Airflow when it creates the run (the form's JSON
    schema, generated from ``TrainParams`` for training). Left here: keys the DAG does not declare (Airflow
    accepts them silently), switches that only fail together, and the free-form ``train_extra`` /
    ``baseline_params`` objects, validated by the training package's models.
    """
    params = _params()
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


# --- data ----------------------------------------------------------------------------------------------
@task(task_id="collect", outlets=[RAW_SNAPSHOT], execution_timeout=timedelta(minutes=60), **IO_RETRIES)
def collect_task() -> str:
    """Dataset (Hub name, path or s3:// URI) → raw snapshot in S3; returns its manifest URI."""
    from sentiflow.data.collect import collect

    context = get_current_context()
    params = dict(context["params"])
    uri = collect(
        params["dataset"],
        run_id=context["run_id"],
        config_name=_optional(params.get("dataset_config")),
        text_column=_optional(params.get("text_column")),
        label_column=_optional(params.get("label_column")),
        label_names=_optional(params.get("label_names")),
        sample_size=_optional(params.get("sample_size")),
        eval_sample_size=_optional(params.get("eval_sample_size")),
        seed=int(params.get("seed", 42)),
        store=_store(PipelineSettings()),
    )
    context["outlet_events"][RAW_SNAPSHOT].extra = {"manifest_uri": uri}
    return uri


@task(task_id="clean", outlets=[CLEAN_SNAPSHOT], execution_timeout=timedelta(minutes=60), **IO_RETRIES)
def clean_task(raw_manifest_uri: str) -> str:
    """Raw snapshot → clean snapshot (HTML, special characters, lowercase); returns its manifest URI."""
    from sentiflow.data.clean import clean_snapshot

    context = get_current_context()
    uri = clean_snapshot(raw_manifest_uri, store=_store(PipelineSettings()))
    context["outlet_events"][CLEAN_SNAPSHOT].extra = {"manifest_uri": uri}
    return uri


@task(task_id="training_data", execution_timeout=timedelta(minutes=30), retries=0)
def training_data_task(clean_manifest_uri: str) -> str:
    """With ``use_feedback``: export the server's labelled feedback and merge it into the training split.

    Returns the manifest URI every training task reads (the clean one when ``use_feedback`` is off). No
    retries: an unreachable server fails here with a message that says how to run without feedback.
    """
    from sentiflow.pipeline.training_data import FeedbackExportError, training_manifest_uri

    context = get_current_context()
    params = dict(context["params"])
    pipeline = PipelineSettings()
    use_feedback = bool(params.get("use_feedback", False))
    endpoint = server_endpoint(pipeline) if use_feedback else None
    try:
        return training_manifest_uri(
            clean_manifest_uri,
            use_feedback=use_feedback,
            run_id=context["run_id"],
            server_url=endpoint.url if endpoint else "",
            token=endpoint.token if endpoint else None,
            store=_store(pipeline),
            log=log.info,
            max_fraction=float(params.get("feedback_max_fraction", pipeline.feedback_max_fraction)),
        )
    except FeedbackExportError as exc:
        raise AirflowFailException(str(exc)) from exc


def feedback_lineage(train_task_ids: list[str]) -> Any:
    """After training: record on each training run how many feedback rows it used and their snapshot."""

    @task(task_id="feedback_lineage", trigger_rule="none_failed_min_one_success", **IO_RETRIES)
    def _feedback_lineage() -> dict[str, Any]:
        from sentiflow.data.snapshot import read_manifest
        from sentiflow.feedback.dataset import log_feedback_lineage
        from sentiflow.pipeline import registry

        context = get_current_context()
        pipeline = PipelineSettings()
        manifest_uri = context["ti"].xcom_pull(task_ids="training_data")
        manifest = read_manifest(_store(pipeline), manifest_uri)
        client = registry.mlflow_client(mlflow_settings(pipeline))
        raw = context["ti"].xcom_pull(task_ids=train_task_ids)
        results = [r for r in (raw if isinstance(raw, list) else [raw]) if r]
        lineage: dict[str, Any] = {}
        for result in results:
            lineage = log_feedback_lineage(result["run_id"], manifest, client=client)
            log.info("run %s: %s", result["run_id"], lineage)
        return {**lineage, "runs": [r["run_id"] for r in results], "manifest_uri": manifest_uri}

    return _feedback_lineage()


@task(task_id="drift_report", execution_timeout=timedelta(minutes=30), **IO_RETRIES)
def drift_report_task(manifest_uri: str) -> dict[str, Any]:
    """Production sample vs this run's training snapshot: HTML report in S3 and MLflow, alert above PSI.

    Wired beside training, downstream of nothing in the release: it informs, it never gates promotion.
    """
    from sentiflow.feedback.drift import drift_report, log_drift_to_mlflow
    from sentiflow.pipeline import registry

    context = get_current_context()
    pipeline = PipelineSettings()
    store = _store(pipeline)
    settings = mlflow_settings(pipeline)
    result = drift_report(manifest_uri, run_id=_safe(context["run_id"]), store=store)
    mlflow_run_id = log_drift_to_mlflow(
        result, client=registry.mlflow_client(settings), settings=settings, store=store
    )
    log.info("drift: %s; report %s; MLflow run %s", result.metrics, result.report_uri, mlflow_run_id)
    return {
        "metrics": result.metrics,
        "report_uri": result.report_uri,
        "drifted": result.drifted,
        "mlflow_run_id": mlflow_run_id,
    }


# --- training ------------------------------------------------------------------------------------------
def train_locally(manifest_uri: str, family: str, params_json: str) -> dict[str, Any]:
    from sentiflow.pipeline.local_train import LocalTrainingError, run_local_training

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
def train_local(manifest_uri: str, params_by_family: dict[str, str]) -> dict[str, Any]:
    """Fine-tune the transformer on this worker (same entrypoint as the pod)."""
    return train_locally(manifest_uri, FAMILY_TRANSFORMER, params_by_family[FAMILY_TRANSFORMER])


@task(task_id="train_baseline", execution_timeout=timedelta(hours=1), retries=0)
def train_baseline(manifest_uri: str, params_by_family: dict[str, str]) -> dict[str, Any]:
    """TF-IDF + logistic regression, registered in the same model so selection compares families."""
    return train_locally(manifest_uri, FAMILY_TFIDF, params_by_family[FAMILY_TFIDF])


def trainer_pod(task_id: str, manifest_task_id: str = "training_data", **overrides: Any) -> Any:
    """The KubernetesPodOperator that trains on a GPU node; ``overrides`` (e.g. ``arguments``) win.

    It reads the manifest URI that ``manifest_task_id`` returned (the feedback-enriched one by default).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from sentiflow.pipeline.pod import train_arguments, trainer_pod_kwargs
    from sentiflow.pipeline.settings import TrainerPodSettings

    pod = TrainerPodSettings()
    arguments = train_arguments(
        "{{ ti.xcom_pull(task_ids='" + manifest_task_id + "') }}",
        FAMILY_TRANSFORMER,
        "{{ ti.xcom_pull(task_ids='validate_params')['" + FAMILY_TRANSFORMER + "'] }}",
    )
    kwargs = trainer_pod_kwargs(arguments=arguments, pod=pod)
    kwargs.update(overrides)
    return KubernetesPodOperator(
        task_id=task_id, execution_timeout=timedelta(seconds=pod.execution_timeout_s), retries=1, **kwargs
    )


def trainer_pods_mapped(task_id: str, arguments: Any) -> Any:
    """One training pod per element of ``arguments`` (dynamic task mapping, for the sweep)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from sentiflow.pipeline.pod import trainer_pod_kwargs
    from sentiflow.pipeline.settings import TrainerPodSettings

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


# --- selection and release (the shared tail) -------------------------------------------------------------
def _decide(results: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Best version by the selection metric, then champion vs challenger on the same rows (``gating``)."""
    from sentiflow.pipeline import registry
    from sentiflow.pipeline.comparison import ComparisonError
    from sentiflow.pipeline.gating import decide

    pipeline = PipelineSettings()
    settings = mlflow_settings(pipeline)
    client = registry.mlflow_client(settings)
    name = settings.registered_model_name
    scope = params.get("selection_scope") or pipeline.selection_scope
    if scope == "all_versions":
        candidates = registry.all_candidates(client, name)
    else:
        versions = [str(r["model_version"]) for r in results if r and r.get("model_version")]
        if not versions:
            raise AirflowFailException(f"training registered no version of {name!r} in this run")
        candidates = registry.candidates_for_versions(client, name, versions)
    metric = params["selection_metric"]
    try:
        decision = decide(
            client,
            settings,
            _store(pipeline),
            candidates,
            params,
            dag_run_id=get_current_context()["run_id"],
        )
    except ComparisonError as exc:
        raise AirflowFailException(f"champion and challenger could not be compared: {exc}") from exc
    for c in candidates:
        log.info(
            "candidate version %s (%s, run %s): %s=%s", c.version, c.family, c.run_id, metric, c.value(metric)
        )
    log.info("selected version %s; gate: %s", decision["candidate_version"], decision["reason"])
    return {**decision, "scope": scope, "candidates": [c.version for c in candidates]}


def select_best(train_task_ids: list[str]) -> Any:
    """Branch: pick the best version among the training tasks' results, gate it against the champion."""

    @task.branch(task_id="select_best", trigger_rule="none_failed_min_one_success", **IO_RETRIES)
    def _select_best() -> str:
        context = get_current_context()
        raw = context["ti"].xcom_pull(task_ids=train_task_ids)
        results = [r for r in (raw if isinstance(raw, list) else [raw]) if r]
        decision = _decide(results, dict(context["params"]))
        context["ti"].xcom_push(key="decision", value=decision)
        return PROMOTE if decision["promote"] else KEEP_CHAMPION

    return _select_best()


@task(task_id=KEEP_CHAMPION)
def keep_champion() -> dict[str, Any]:
    """The gate said no: the champion and the served version stay; the reason is this task's log and XCom."""
    decision = get_current_context()["ti"].xcom_pull(task_ids="select_best", key="decision")
    log.info("champion kept: %s", decision["reason"])
    return decision


@task(task_id=PROMOTE, outlets=[CHAMPION_MODEL], **IO_RETRIES)
def promote() -> dict[str, Any]:
    """Alias ``champion`` → the selected version; the old champion becomes ``previous`` (``release.promote``).

    Retries are safe: the aliases from before are recorded in the registry before anything moves.
    """
    from sentiflow.pipeline import registry, release

    context = get_current_context()
    decision = context["ti"].xcom_pull(task_ids="select_best", key="decision")
    settings = mlflow_settings(PipelineSettings())
    prior = release.promote(registry.mlflow_client(settings), settings, decision["candidate_version"])
    log.info("promoted version %s (previous: %s): %s", prior.candidate, prior.champion, decision["reason"])
    context["outlet_events"][CHAMPION_MODEL].extra = {
        "registered_model": settings.registered_model_name,
        "version": prior.candidate,
    }
    return {
        "version": prior.candidate,
        "previous": prior.champion,
        "prior_previous": prior.previous,
        "run_id": decision["candidate_run_id"],
    }


def _release_context(promoted: dict[str, Any]) -> tuple[Any, Any, Any, Any, PipelineSettings]:
    """(MLflow client, MLflow settings, server client, prior aliases, pipeline settings) of a release."""
    from sentiflow.pipeline import registry
    from sentiflow.pipeline.deploy import server_client
    from sentiflow.pipeline.release import PriorAliases

    pipeline = PipelineSettings()
    settings = mlflow_settings(pipeline)
    prior = PriorAliases(
        candidate=str(promoted["version"]),
        champion=promoted.get("previous"),
        previous=promoted.get("prior_previous"),
    )
    server = server_client(server_endpoint(pipeline))
    return registry.mlflow_client(settings), settings, server, prior, pipeline


@task(task_id="deploy", execution_timeout=timedelta(minutes=30), retries=0)
def deploy(promoted: dict[str, Any]) -> dict[str, Any]:
    """Wait until every live model-server replica serves the new champion (they follow the alias promote
    moved); any failure (a failed load, ``deploy_timeout_s`` passed) restores the aliases from before and
    the replicas follow them back (``release.deploy``).

    No retries: a failed deploy restored the aliases and the old model, so the run ends in a consistent
    state and says why.
    """
    from sentiflow.pipeline import release
    from sentiflow.pipeline.gating import model_not_served_here

    client, settings, server, prior, pipeline = _release_context(promoted)
    elsewhere = model_not_served_here(settings.registered_model_name)
    if elsewhere:  # registered_model_name names a model this server does not serve
        release.finish(client, settings)  # nothing to deploy or check here: the promotion is the release
        raise AirflowSkipException(elsewhere)
    try:
        info = release.deploy(
            client,
            settings,
            server,
            prior,
            timeout_s=pipeline.deploy_timeout_s,
            run_id=promoted.get("run_id"),
        )
    except release.ReleaseError as exc:
        raise AirflowFailException(str(exc)) from exc
    log.info("every model-server replica serves version %s", info.get("version"))
    return {**promoted, "version": str(info.get("version"))}


@task(task_id="inference_check", execution_timeout=timedelta(minutes=15), retries=0)
def inference_check(deployed: dict[str, Any]) -> dict[str, Any]:
    """Known texts → ``/predict``; a report to S3 and MLflow; any failure (the check's, the report's, the
    server's): roll back to the aliases from before and fail (``release.check``)."""
    from sentiflow.pipeline import release
    from sentiflow.pipeline.check_plan import plan_check
    from sentiflow.pipeline.checks import run_check
    from sentiflow.pipeline.deploy import version_predict

    context = get_current_context()
    params = dict(context["params"])
    client, settings, server, prior, pipeline = _release_context(deployed)
    store = _store(pipeline)
    prefix = store.uri(pipeline.reports_prefix, _safe(context["run_id"]), "inference_check")

    def check_report() -> Any:
        # sampled from the deployed model's test split + the trigger's cases; bar from its test accuracy
        plan = plan_check(store, client, deployed.get("run_id"), params)
        log.info(
            "%d check cases (%d sampled from %s); required accuracy %.3f",
            len(plan.cases), plan.sampled, plan.sampled_from, plan.required_accuracy,
        )  # fmt: skip
        # answers from a replica that has not swapped yet do not count
        predict = version_predict(server, prior.candidate)
        return run_check(predict, plan.cases, plan.required_accuracy, log=log.info)

    def write_report(report: Any) -> dict[str, Any]:
        summary = {**report.summary(), "dag_run_id": context["run_id"], "expected_version": prior.candidate}
        store.put_bytes(prefix.join("predictions.csv"), report.csv_bytes(), "text/csv")
        store.put_json(prefix.join("summary.json"), summary)
        summary["report_uri"] = str(prefix)
        _log_report_to_mlflow(deployed.get("run_id"), report, summary)
        log.info("inference check: %s", json.dumps(summary))
        return summary

    try:
        return release.check(
            client,
            settings,
            server,
            prior,
            run_check=check_report,
            write_report=write_report,
            timeout_s=pipeline.deploy_timeout_s,
            run_id=deployed.get("run_id"),
        )
    except release.ReleaseError as exc:
        raise AirflowFailException(str(exc)) from exc


def _safe(run_id: str) -> str:
    from sentiflow.data.collect import sanitize_run_id

    return sanitize_run_id(run_id)


def _log_report_to_mlflow(run_id: str | None, report: Any, summary: dict[str, Any]) -> None:
    """Attach the report to the MLflow run of the version it checked (visible next to its metrics)."""
    import tempfile
    from pathlib import Path

    from sentiflow.pipeline import registry

    if not run_id:
        return
    client = registry.mlflow_client(mlflow_settings(PipelineSettings()))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "predictions.csv").write_bytes(report.csv_bytes())
        (Path(tmp) / "summary.json").write_text(json.dumps(summary, indent=2))
        client.log_artifacts(run_id, tmp, artifact_path="inference_check")


def release_tail(train_task_ids: list[str]) -> Any:
    """select_best → (promote → deploy → inference_check | keep_champion); returns select_best."""
    selected = select_best(train_task_ids)
    promoted = promote()
    selected >> [promoted, keep_champion()]
    inference_check(deploy(promoted))
    return selected
