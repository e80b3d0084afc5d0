"""The Airflow UI's extra links: the plugin attaching them to the right tasks.

Resolving every link against a finished run, as the api-server does, is in ``test_airflow_scheduler.py``.
Here the plugin is loaded by Airflow's plugin manager in a child process (its own ``AIRFLOW_HOME``), the DAGs
are serialized and deserialized the way the api-server reads them, and each task's link names are listed.
URL building alone: tests/unit/orchestration/test_links.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


SCRIPT = r"""
import json
from airflow import plugins_manager
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
from airflow.models.taskinstancekey import TaskInstanceKey

plugin_links = sorted(type(link).__name__ for link in plugins_manager.get_operator_extra_links())
out = {"link_classes": plugin_links, "dags": {}}
restored = {}
for dag_id, dag in DagBag(dag_folder=None).dags.items():
    restored[dag_id] = DagSerialization.from_dict(DagSerialization.to_dict(dag))  # as the api-server reads it
    out["dags"][dag_id] = {t.task_id: sorted(t.extra_links) for t in restored[dag_id].tasks}
pipeline = restored["sentiment_pipeline"]
def link(task_id, name):
    task = pipeline.get_task(task_id)
    key = TaskInstanceKey(dag_id="sentiment_pipeline", task_id=task_id, run_id="r", try_number=1)
    return task.operator_extra_link_dict[name].get_link(task, ti_key=key)
out["resolved"] = {
    "deploy/Model server": link("deploy", "Model server"),
    "collect/Model server": link("collect", "Model server"),
    "train_baseline/MLflow run (no XCom)": link("train_baseline", "MLflow run"),
    "deploy/Check report (no XCom)": link("deploy", "Check report"),
}
print("JSON" + json.dumps(out))
"""


@pytest.mark.slow  # a child process importing Airflow and parsing both DAGs: ~20-60 s
def test_the_plugin_attaches_each_link_to_the_tasks_it_serves(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",  # never migrated
        "AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER": json.dumps({"conn_type": "http", "host": "http://srv:8000"}),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=REPO
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")), None)
    assert line, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = json.loads(line[4:])
    assert out["link_classes"] == ["CheckReportLink", "MlflowRunLink", "ModelServerLink", "ModelVersionLink"]
    pipeline = out["dags"]["sentiment_pipeline"]
    for task_id in ("train_local", "train_baseline", "train_kubernetes"):
        assert "MLflow run" in pipeline[task_id]
    assert "Model version" in pipeline["select_best"]  # a branch operator
    assert {"Model server", "Check report"} <= set(pipeline["deploy"]) & set(pipeline["inference_check"])
    assert "MLflow run" in out["dags"]["sentiment_sweep"]["train_grid_kubernetes"]
    release = out["dags"]["sentiment_release"]  # a manual release shows the same buttons as the pipeline's
    assert "Model version" in release["select_best"]
    assert {"Model server", "Check report"} <= set(release["deploy"]) & set(release["inference_check"])
    assert out["resolved"] == {
        "deploy/Model server": "http://srv:8000/ui/",
        "collect/Model server": "",  # not a task it serves: no button
        "train_baseline/MLflow run (no XCom)": "",  # nothing to read: no button, no error
        "deploy/Check report (no XCom)": "",
    }
