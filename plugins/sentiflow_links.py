"""Airflow UI buttons from sentiflow's tasks to what they made: operator extra links.

- training tasks (``train_local``, ``train_baseline``, ``train_kubernetes``, the sweep's ``train_grid_*``)
  → **MLflow run**: the run their result names (``run_id``);
- ``select_best`` and ``promote`` → **Model version**: the registry version chosen (``decision`` XCom,
  ``candidate_version``) or promoted;
- ``deploy`` and ``inference_check`` → **Model server** (its web page) and **Check report** (the inference
  check's ``summary.json``, as a presigned S3 URL valid for an hour).

The api-server resolves a link when the task's page is opened: it reads the ids from XCom (the DB) and the
endpoints from the pipeline's Airflow connections (``sentiflow_mlflow``, ``sentiflow_model_server``,
``sentiflow_s3``). Anything missing (a failed task, no report yet, a connection not set) gives no link
rather than an error. URL building lives in ``sentiflow.orchestration.links``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from sentiflow.names import GATE_DECISION_KEY, GATE_TASK
from sentiflow.orchestration import links

log = logging.getLogger(__name__)

#: Presigned report URLs expire after this many seconds (each page view signs a fresh one).
REPORT_URL_TTL_S = 3600


def _operator_ref(module: str, name: str) -> type:
    """Stand-in with the operator class's name and module: the plugin manager matches operators by those.

    Avoids importing the Kubernetes provider (and its client) into every process that loads plugins.
    """
    return type(name, (), {"__module__": module})


PYTHON_TASK = _operator_ref("airflow.providers.standard.decorators.python", "_PythonDecoratedOperator")
BRANCH_TASK = _operator_ref(
    "airflow.providers.standard.decorators.branch_python", "_BranchPythonDecoratedOperator"
)
POD_TASK = _operator_ref("airflow.providers.cncf.kubernetes.operators.pod", "KubernetesPodOperator")


def xcom_value(ti_key: Any, task_id: str | None = None, key: str = "return_value") -> Any:
    """One XCom of this DAG run (of ``task_id``, default the linked task itself), deserialized; else None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    task_id = task_id or ti_key.task_id
    map_index = ti_key.map_index if task_id == ti_key.task_id else -1
    try:
        with create_session() as session:
            row = session.scalars(
                XComModel.get_many(
                    key=key,
                    run_id=ti_key.run_id,
                    dag_ids=ti_key.dag_id,
                    task_ids=task_id,
                    map_indexes=map_index,
                )
            ).first()
            return XComModel.deserialize_value(row) if row is not None else None
    except Exception:  # a link must never break the task page
        log.warning("cannot read XCom %s of %s in %s", key, task_id, ti_key.run_id, exc_info=True)
        return None


def _connection(setting: str) -> Any:
    from airflow.models.connection import Connection

    from sentiflow.orchestration.settings import PipelineSettings

    conn_id = getattr(PipelineSettings(), setting)
    try:
        return conn_id, Connection.get_connection_from_secrets(conn_id)
    except Exception:
        log.warning("connection %s is not defined; no link", conn_id)
        return conn_id, None


def _http_base(setting: str) -> str | None:
    from sentiflow.orchestration.connections import http_url

    conn_id, conn = _connection(setting)
    if conn is None:
        return None
    try:
        return http_url(conn, conn_id)
    except ValueError:
        return None


def presigned_report_url(report_uri: str) -> str | None:
    """A browser-openable URL of the report's ``summary.json``, signed with the ``sentiflow_s3`` keys."""
    from sentiflow.orchestration.connections import s3_settings_from
    from sentiflow.storage import ObjectStore, S3Uri

    _, conn = _connection("s3_conn_id")
    if conn is None:
        return None
    extra = conn.extra_dejson
    settings = s3_settings_from(
        access_key_id=conn.login,
        secret_access_key=conn.password,
        endpoint_url=extra.get("endpoint_url"),
        region_name=extra.get("region_name"),
        bucket=extra.get("bucket"),
    )
    target = S3Uri.parse(links.report_summary_uri(report_uri))
    return ObjectStore(settings).client.generate_presigned_url(
        "get_object", Params={"Bucket": target.bucket, "Key": target.key}, ExpiresIn=REPORT_URL_TTL_S
    )


class MlflowRunLink(BaseOperatorLink):
    """A training task → its MLflow run (params, per-epoch metrics, evaluation artifacts, model)."""

    name = "MLflow run"
    operators: ClassVar[list[type]] = [PYTHON_TASK, POD_TASK]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if not links.is_training_task(ti_key.task_id):
            return ""
        run_id = links.xcom_field(xcom_value(ti_key), "run_id")
        base = _http_base("mlflow_conn_id") if run_id else None
        return links.mlflow_run_url(base, run_id) if base and run_id else ""


class ModelVersionLink(BaseOperatorLink):
    """select_best → the registry version it chose; promote → the version it made champion."""

    name = "Model version"
    operators: ClassVar[list[type]] = [PYTHON_TASK, BRANCH_TASK]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if ti_key.task_id == GATE_TASK:
            version = links.xcom_field(xcom_value(ti_key, key=GATE_DECISION_KEY), "candidate_version")
        elif ti_key.task_id == links.PROMOTE:
            version = links.xcom_field(xcom_value(ti_key), "version")
        else:
            return ""
        base = _http_base("mlflow_conn_id") if version else None
        if not (base and version):
            return ""
        from sentiflow.settings.components import MLflowSettings

        return links.model_version_url(base, MLflowSettings().registered_model_name, version)


class ModelServerLink(BaseOperatorLink):
    """deploy / inference_check → the model server's web page."""

    name = "Model server"
    operators: ClassVar[list[type]] = [PYTHON_TASK]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if ti_key.task_id not in links.SERVER_TASKS:
            return ""
        base = _http_base("server_conn_id")
        return links.server_page_url(base) if base else ""


class CheckReportLink(BaseOperatorLink):
    """deploy / inference_check → the inference check's report (summary.json) of this run."""

    name = "Check report"
    operators: ClassVar[list[type]] = [PYTHON_TASK]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if ti_key.task_id not in links.SERVER_TASKS:
            return ""
        uri = links.xcom_field(xcom_value(ti_key, task_id=links.INFERENCE_CHECK), "report_uri")
        if not uri:
            return ""
        try:
            return presigned_report_url(uri) or ""
        except Exception:
            log.warning("cannot sign a URL for %s", uri, exc_info=True)
            return ""


class SentiflowLinksPlugin(AirflowPlugin):
    name = "sentiflow_links"
    # AirflowPlugin declares it a plain attribute (list[Any]); a ClassVar here contradicts that for mypy
    operator_extra_links = [  # noqa: RUF012
        MlflowRunLink(),
        ModelVersionLink(),
        ModelServerLink(),
        CheckReportLink(),
    ]
