"""Airflow tasks of the data stage: collect → clean → training data (feedback merged), the drift report and
the feedback lineage recorded on the training runs. Each returns S3 URIs or small dicts for XCom.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from sentiflow.orchestration.params import DatasetParams, FeedbackParams
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.orchestration.task_context import (
    CLEAN_SNAPSHOT,
    IO_RETRIES,
    RAW_SNAPSHOT,
    log,
    mlflow_settings,
    object_store,
    safe_run_id,
    server_endpoint,
    training_results,
)


# --- data ----------------------------------------------------------------------------------------------
@task(task_id="collect", outlets=[RAW_SNAPSHOT], execution_timeout=timedelta(minutes=60), **IO_RETRIES)
def collect_task(dataset_json: str, seed: int) -> str:
    """Dataset (Hub name, path or s3:// URI) → raw snapshot in S3; returns its manifest URI.

    ``dataset_json``: ``DatasetParams`` (``validate_params``); ``seed``: the run's seed, for the samples.
    """
    from sentiflow.data.collect import collect

    context = get_current_context()
    dataset = DatasetParams.model_validate_json(dataset_json)
    uri = collect(
        dataset.dataset,
        run_id=context["run_id"],
        config_name=dataset.dataset_config,
        text_column=dataset.text_column,
        label_column=dataset.label_column,
        label_names=dataset.label_names,
        sample_size=dataset.sample_size,
        eval_sample_size=dataset.eval_sample_size,
        seed=seed,
        store=object_store(PipelineSettings()),
    )
    context["outlet_events"][RAW_SNAPSHOT].extra = {"manifest_uri": uri}
    return uri


@task(task_id="clean", outlets=[CLEAN_SNAPSHOT], execution_timeout=timedelta(minutes=60), **IO_RETRIES)
def clean_task(raw_manifest_uri: str) -> str:
    """Raw snapshot → clean snapshot (HTML, special characters, lowercase); returns its manifest URI."""
    from sentiflow.data.clean import clean_snapshot

    context = get_current_context()
    uri = clean_snapshot(raw_manifest_uri, store=object_store(PipelineSettings()))
    context["outlet_events"][CLEAN_SNAPSHOT].extra = {"manifest_uri": uri}
    return uri


@task(task_id="training_data", execution_timeout=timedelta(minutes=30), retries=0)
def training_data_task(clean_manifest_uri: str, feedback_json: str) -> str:
    """With ``use_feedback``: export the server's labelled feedback and merge it into the training split.

    Returns the manifest URI every training task reads (the clean one when ``use_feedback`` is off). No
    retries: an unreachable server fails here with a message that says how to run without feedback.
    ``feedback_json``: ``FeedbackParams`` (``validate_params``), whose defaults are the one definition.
    """
    from sentiflow.orchestration.training_data import FeedbackExportError, training_manifest_uri

    context = get_current_context()
    feedback = FeedbackParams.model_validate_json(feedback_json)
    pipeline = PipelineSettings()
    use_feedback = feedback.use_feedback
    endpoint = server_endpoint(pipeline) if use_feedback else None
    try:
        return training_manifest_uri(
            clean_manifest_uri,
            use_feedback=use_feedback,
            run_id=context["run_id"],
            server_url=endpoint.url if endpoint else "",
            token=endpoint.token if endpoint else None,
            store=object_store(pipeline),
            log=log.info,
            max_fraction=feedback.feedback_max_fraction,
        )
    except FeedbackExportError as exc:
        raise AirflowFailException(str(exc)) from exc


@task(task_id="feedback_lineage", trigger_rule="none_failed_min_one_success", **IO_RETRIES)
def feedback_lineage(manifest_uri: str, training_outputs: list[Any]) -> dict[str, Any]:
    """After training: record on each training run how many feedback rows it used and their snapshot.

    ``training_outputs``: the training tasks' outputs (XComArgs); the ones the branch skipped are None.
    """
    from sentiflow import registry
    from sentiflow.data.snapshot import read_manifest
    from sentiflow.feedback.dataset import log_feedback_lineage

    pipeline = PipelineSettings()
    manifest = read_manifest(object_store(pipeline), manifest_uri)
    client = registry.mlflow_client(mlflow_settings(pipeline))
    results = training_results(training_outputs)
    lineage: dict[str, Any] = {}
    for result in results:
        lineage = log_feedback_lineage(result["run_id"], manifest, client=client)
        log.info("run %s: %s", result["run_id"], lineage)
    return {**lineage, "runs": [r["run_id"] for r in results], "manifest_uri": manifest_uri}


@task(task_id="drift_report", execution_timeout=timedelta(minutes=30), **IO_RETRIES)
def drift_report_task(manifest_uri: str) -> dict[str, Any]:
    """Production sample vs this run's training snapshot: HTML report in S3 and MLflow, alert above PSI.

    Wired beside training, downstream of nothing in the release: it informs, it never gates promotion.
    """
    from sentiflow import registry
    from sentiflow.feedback.drift import drift_report, log_drift_to_mlflow

    context = get_current_context()
    pipeline = PipelineSettings()
    store = object_store(pipeline)
    settings = mlflow_settings(pipeline)
    result = drift_report(manifest_uri, run_id=safe_run_id(context["run_id"]), store=store)
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
