"""Airflow tasks of the data stage: collect → clean → training data (feedback merged), the drift report and
the feedback lineage recorded on the training runs. Each returns S3 URIs or small dicts for XCom.

clean runs as mapped tasks, one per raw part (``clean_mapped`` wires them), so the Celery or Kubernetes
executors spread it over workers; its last task keeps the id ``clean`` and returns the manifest URI.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    server_endpoint,
    training_results,
)


# --- data ----------------------------------------------------------------------------------------------
@task(task_id="collect", outlets=[RAW_SNAPSHOT], execution_timeout=timedelta(minutes=60), **IO_RETRIES)
def collect_task(dataset: DatasetParams, seed: int) -> str:
    """Dataset (Hub name, path or s3:// URI) → raw snapshot in S3; returns its manifest URI.

    ``seed``: the run's seed, for the samples.
    """
    from sentiflow.data.collect import collect

    context = get_current_context()
    uri = collect(
        dataset.dataset,
        run_id=context["run_id"],
        dataset_config=dataset.dataset_config,
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


# clean, spread over workers (sentiflow.data.clean_parts): plan → one mapped task per raw part → the copies
# across parts, found on digests → the parts holding such copies rewritten (mapped) → the manifest.
#: At most this many parts of one run are cleaned at once (each task holds about one batch of rows).
CLEAN_PARALLEL_PARTS = 16
_CLEAN_TIMEOUT = timedelta(minutes=60)


@task(task_id="clean_plan", execution_timeout=timedelta(minutes=10), **IO_RETRIES)
def clean_plan_task(raw_manifest_uri: str) -> list[dict[str, Any]]:
    """One ``{"split", "part_index"}`` per raw part (the mapped tasks' arguments); clears the clean prefix."""
    from sentiflow.data.clean_parts import clean_plan

    return clean_plan(raw_manifest_uri, store=object_store(PipelineSettings()))


@task(
    task_id="clean_part",
    max_active_tis_per_dagrun=CLEAN_PARALLEL_PARTS,
    execution_timeout=_CLEAN_TIMEOUT,
    **IO_RETRIES,
)
def clean_part_task(raw_manifest_uri: str, split: str, part_index: int) -> dict[str, Any]:
    """Clean one raw part (copies within it dropped); returns its part entry and counts for XCom."""
    from sentiflow.data.clean_parts import clean_part

    return clean_part(raw_manifest_uri, split, part_index, store=object_store(PipelineSettings()))


@task(task_id="clean_dedup", execution_timeout=_CLEAN_TIMEOUT, **IO_RETRIES)
def clean_dedup_task(cleaned: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Digests only: the parts that repeat a text of an earlier part of their split (to be rewritten)."""
    from sentiflow.data.clean_parts import find_repeats

    return find_repeats(list(cleaned), store=object_store(PipelineSettings()))


@task(
    task_id="clean_rewrite",
    max_active_tis_per_dagrun=CLEAN_PARALLEL_PARTS,
    execution_timeout=_CLEAN_TIMEOUT,
    **IO_RETRIES,
)
def clean_rewrite_task(cleaned: dict[str, Any], repeats_uri: str) -> dict[str, Any]:
    """One part rewritten without the rows an earlier part of its split already holds."""
    from sentiflow.data.clean_parts import drop_repeats

    return drop_repeats(cleaned, repeats_uri, store=object_store(PipelineSettings()))


@task(
    task_id="clean",
    outlets=[CLEAN_SNAPSHOT],
    trigger_rule="none_failed",  # clean_rewrite is skipped when no part needs a rewrite
    execution_timeout=timedelta(minutes=10),
    **IO_RETRIES,
)
def clean_merge_task(
    raw_manifest_uri: str, cleaned: Sequence[dict[str, Any]], rewritten: Sequence[dict[str, Any]] | None
) -> str:
    """Write the clean manifest (no rows read); returns its URI, what every later task reads."""
    from sentiflow.data.clean_parts import merge_clean

    context = get_current_context()
    uri = merge_clean(
        raw_manifest_uri,
        list(cleaned),
        list(rewritten or []),
        store=object_store(PipelineSettings()),
    )
    context["outlet_events"][CLEAN_SNAPSHOT].extra = {"manifest_uri": uri}
    return uri


def clean_mapped(raw_uri: Any) -> Any:
    """Wire the mapped clean after ``raw_uri`` (collect's output); returns the ``clean`` task's output.

    With the Celery or Kubernetes executor each mapped task may run on another worker.
    """
    plan = clean_plan_task(raw_uri)
    cleaned: Any = clean_part_task.partial(raw_manifest_uri=raw_uri).expand_kwargs(plan)
    rewritten: Any = clean_rewrite_task.expand_kwargs(clean_dedup_task(cleaned))
    return clean_merge_task(raw_uri, cleaned, rewritten)


@task(task_id="training_data", execution_timeout=timedelta(minutes=30), retries=0)
def training_data_task(clean_manifest_uri: str, feedback: FeedbackParams) -> str:
    """With ``use_feedback``: export the server's labelled feedback and merge it into the training split.

    Returns the manifest URI every training task reads (the clean one when ``use_feedback`` is off). No
    retries: an unreachable server fails here with a message that says how to run without feedback.
    """
    from sentiflow.orchestration.training_data import FeedbackExportError, training_manifest_uri

    context = get_current_context()
    pipeline = PipelineSettings()
    endpoint = server_endpoint(pipeline) if feedback.use_feedback else None
    try:
        return training_manifest_uri(
            clean_manifest_uri,
            feedback,
            run_id=context["run_id"],
            server_url=endpoint.url if endpoint else "",
            token=endpoint.reviewer_token if endpoint else None,
            store=object_store(pipeline),
            log=log.info,
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
    from sentiflow.data.collect import sanitize_run_id
    from sentiflow.feedback.drift import drift_report, log_drift_to_mlflow

    context = get_current_context()
    pipeline = PipelineSettings()
    store = object_store(pipeline)
    settings = mlflow_settings(pipeline)
    result = drift_report(manifest_uri, run_id=sanitize_run_id(context["run_id"]), store=store)
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
