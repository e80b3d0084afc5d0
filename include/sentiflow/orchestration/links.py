"""Which Airflow task links where, and how each URL is built from the ids the tasks leave in XCom.

``plugins/sentiflow_links.py`` registers these as operator extra links (buttons on a task in the Airflow
UI); this module holds everything that does not need Airflow, so it is tested as plain functions. Every
reader is tolerant: a task that failed, was skipped or returned an older shape simply has no link (``None``),
never an error in the UI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

#: Task ids whose return value is a training result (``run_id``, ``model_version``): the pipeline's
#: ``train_local``/``train_baseline``/``train_kubernetes`` and the sweep's mapped ``train_grid_*``.
TRAINING_TASK_PREFIX = "train_"
PROMOTE, DEPLOY, INFERENCE_CHECK = "promote", "deploy", "inference_check"
#: The release tasks that show the model server's page and the inference check's report.
SERVER_TASKS = frozenset({DEPLOY, INFERENCE_CHECK})
#: Inside ``report_uri`` (a prefix): the file a person opens first.
REPORT_SUMMARY = "summary.json"


def is_training_task(task_id: str) -> bool:
    return task_id.startswith(TRAINING_TASK_PREFIX)


def xcom_field(value: Any, key: str) -> str | None:
    """``value[key]`` of a task's XCom as text: a training result's ``run_id``, the gate decision's
    ``candidate_version`` (chosen, promoted or not), promote's ``version``, the check's ``report_uri``;
    None where ``value`` is not a dict or the field is missing or empty."""
    if isinstance(value, Mapping):
        found = value.get(key)
        if found not in (None, ""):
            return str(found)
    return None


def mlflow_run_url(mlflow_url: str, run_id: str) -> str:
    """MLflow's UI opens a run by id alone (``#/runs/<id>`` redirects to its experiment)."""
    return f"{mlflow_url.rstrip('/')}/#/runs/{quote(run_id, safe='')}"


def model_version_url(mlflow_url: str, model_name: str, version: str) -> str:
    base = mlflow_url.rstrip("/")
    return f"{base}/#/models/{quote(model_name, safe='')}/versions/{quote(version, safe='')}"


def server_page_url(server_url: str) -> str:
    """The model server's web page (what is served, the versions, a text box to try it)."""
    return f"{server_url.rstrip('/')}/ui/"


def report_summary_uri(uri: str) -> str:
    """``s3://…/inference_check`` → ``s3://…/inference_check/summary.json`` (a file URI stays as it is)."""
    return uri if uri.endswith(".json") else f"{uri.rstrip('/')}/{REPORT_SUMMARY}"
