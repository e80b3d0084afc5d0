"""What every Airflow task of the pipeline shares: connections turned into library settings, the run's
registered model, the Assets the pipeline produces and the retry policy of tasks that only do I/O.

The task modules (``data_tasks``, ``training_tasks``, ``release_tasks``) import from here; the DAG files
wire those together. Heavy libraries are imported inside functions, so parsing a DAG stays cheap.

Wiring passes a task's output (an XComArg) as another task's argument and types it ``Any``: Airflow's
stubs type each task's parameters as the values it receives at run time, not the XComArgs standing for
them while a DAG is wired.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, BaseHook, get_current_context

from sentiflow.orchestration.connections import mlflow_settings_from, s3_settings_from, server_endpoint_from
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.serving_client import ServerEndpoint
from sentiflow.settings.components import MLflowSettings, S3Settings

log = logging.getLogger("sentiflow.pipeline")

# --- Assets: what the pipeline produces, for lineage and asset-triggered DAGs -------------------------
RAW_SNAPSHOT = Asset(name="sentiflow_raw_snapshot", uri="x-sentiflow://snapshots/raw")
CLEAN_SNAPSHOT = Asset(name="sentiflow_clean_snapshot", uri="x-sentiflow://snapshots/clean")
CHAMPION_MODEL = Asset(name="sentiflow_champion_model", uri="x-sentiflow://models/champion")

IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
}


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
    """The run's ``registered_model_name`` (one Airflow, several models); None outside a task or unset.

    Every task needs it (training registers into it, the release moves its aliases), so it is read here
    rather than handed to each task; ``validate_params`` validated it (``SelectionParams``) before any task.
    """
    try:
        params = get_current_context()["params"]
    except Exception:  # no task context (a library call, a test)
        return None
    return params.get("registered_model_name") or None


def server_endpoint(pipeline: PipelineSettings) -> ServerEndpoint:
    return server_endpoint_from(BaseHook.get_connection(pipeline.server_conn_id), pipeline.server_conn_id)


def object_store(pipeline: PipelineSettings) -> Any:
    from sentiflow.storage import ObjectStore

    return ObjectStore(s3_settings(pipeline))


def training_results(resolved: Iterable[Any]) -> list[dict[str, Any]]:
    """The results of the training tasks that ran, from their resolved outputs (XComArgs).

    A task skipped by the branch resolves to None; a mapped task (the sweep's grid) to a sequence of
    results, empty when it was skipped before expanding.
    """
    results: list[dict[str, Any]] = []
    for output in resolved:
        if output is None:
            continue
        if isinstance(output, Mapping):
            results.append(dict(output))
        else:
            results.extend(dict(r) for r in output if r)
    return results
