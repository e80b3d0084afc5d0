"""``sentiment_pipeline`` under Airflow's real scheduler, triggered through the REST API.

Everything else in the suite runs the DAG with ``dag.test()`` (in process, no scheduler); this runs it the way
a deployment does, on this folder's one ``make airflow`` deployment (``local_airflow``: ``airflow
standalone`` through ``sentiflow.localstack.airflow_standalone up``, so its dag-processor, scheduler
(LocalExecutor: each
task in its own process, talking to the api-server's execution API) and api-server, with PID files and
``make airflow``'s environment), against the session stack's S3 and MLflow and the gunicorn model server
``up`` started. Its run is the only one that Airflow executes: the REST tests' runs are deleted unstarted.

Small run: the TF-IDF baseline only (``train_transformer`` off), 300 training reviews in parts of 150 rows
(so clean runs as several mapped task instances), a forced promotion. It asserts the run's state, every
task's state (and each mapped clean instance's), the promoted version (MLflow alias and the server's
answer), and the operator extra links of ``plugins/sentiflow_links.py`` as the api-server resolves them.

Set ``SENTIFLOW_SCHEDULER_RUN_JSON=<path>`` to keep the run's timings (``benchmarks/scheduler_run.py`` does).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sentiflow.settings.components import MLflowSettings
from tests.dagrun import small_run_conf
from tests.e2e.airflow_local.deployment import DAG_ID, HTTP_TIMEOUT_S, LocalAirflow

pytestmark = pytest.mark.slow

#: Each task is a fresh process importing Airflow and sentiflow: tens of seconds each when the box is busy.
RUN_TIMEOUT_S = 1800.0
#: The run's 300 training rows are two parts of ``deployment.PART_ROWS`` (150), validation and test one
#: each: four clean_part instances (each its own process under the LocalExecutor).
MAPPED_CLEAN_PARTS = 4

EXPECTED_STATES = {
    "validate_params": "success",
    "collect": "success",
    "clean_plan": "success",
    "clean_part": "success",  # mapped: one per raw part (MAPPED_CLEAN_PARTS)
    "clean_dedup": "success",
    "clean_rewrite": "success",  # mapped over the parts that repeat an earlier part's text (IMDb has copies)
    "clean": "success",
    "training_data": "success",
    "drift_report": "success",
    "choose_training": "success",
    "train_kubernetes": "skipped",
    "train_local": "skipped",
    "train_baseline": "success",
    "feedback_lineage": "success",
    "select_best": "success",
    "promote": "success",
    "keep_champion": "skipped",
    "deploy": "success",
    "inference_check": "success",
}


@dataclass(frozen=True)
class Airflow:
    url: str
    home: Path
    session: requests.Session

    def get(self, path: str) -> dict:
        response = self.session.get(f"{self.url}/api/v2{path}", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def xcom(self, run_id: str, task_id: str, key: str = "return_value") -> object:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        value = self.get(path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def links(self, run_id: str, task_id: str) -> dict[str, str | None]:
        return self.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/links")["extra_links"]


@pytest.fixture(scope="module")
def airflow(local_airflow: LocalAirflow) -> Airflow:
    """The admin's view of ``make airflow``'s Airflow (the DAG already parsed: the fixture waited for it)."""
    return Airflow(url=local_airflow.url, home=local_airflow.home, session=local_airflow.session("admin"))


@pytest.fixture(scope="module")
def finished_run(airflow: Airflow, imdb_dir: Path, offline_model: Path) -> dict:
    """Unpause, trigger with small params through the REST API, wait for the end; the run and its timings."""
    dag = airflow.get(f"/dags/{DAG_ID}")
    assert dag["is_paused"] is True  # paused at creation, as make airflow promises
    # nothing else may run when it is unpaused: this run is the only one this Airflow executes
    waiting = airflow.get(f"/dags/{DAG_ID}/dagRuns?state=queued&state=running")
    assert waiting["dag_runs"] == [], [run["dag_run_id"] for run in waiting["dag_runs"]]
    # unpause as a user would (the REST API's PATCH), or a triggered run stays queued
    unpaused = airflow.session.patch(
        f"{airflow.url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=HTTP_TIMEOUT_S
    )
    assert unpaused.status_code == 200, unpaused.text
    assert unpaused.json()["is_paused"] is False
    conf = small_run_conf(imdb_dir, offline_model, force_promote=True)
    triggered_at = time.monotonic()
    response = airflow.session.post(
        f"{airflow.url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": "scheduler-test", "logical_date": None, "conf": conf},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    deadline = triggered_at + RUN_TIMEOUT_S
    while True:
        run = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"run still {run['state']} after {RUN_TIMEOUT_S:.0f}s"
        time.sleep(3)
    wall_s = time.monotonic() - triggered_at
    tis = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    record = {
        "state": run["state"],
        "wall_s_trigger_to_end": round(wall_s, 1),
        "executor": "LocalExecutor",
        "run_start_date": run.get("start_date"),
        "run_end_date": run.get("end_date"),
        "conf": conf,
        "tasks": {
            ti["task_id"]: {"state": ti["state"], "duration_s": round(ti["duration"] or 0.0, 1)} for ti in tis
        },
        "mapped": {
            task_id: [
                ti["state"] for ti in sorted(tis, key=lambda ti: ti["map_index"]) if ti["task_id"] == task_id
            ]
            for task_id in sorted({ti["task_id"] for ti in tis if ti["map_index"] >= 0})
        },
    }
    target = os.environ.get("SENTIFLOW_SCHEDULER_RUN_JSON")
    if target:
        Path(target).write_text(json.dumps(record, indent=2) + "\n")
    return {"run_id": run_id, **record}


def test_the_run_succeeds_with_every_task_in_its_expected_state(finished_run: dict) -> None:
    states = {task_id: t["state"] for task_id, t in finished_run["tasks"].items()}
    assert finished_run["state"] == "success", states
    assert states == EXPECTED_STATES
    # clean ran as mapped task instances, one per raw part of the multi-part snapshot, and rewrote the parts
    # holding copies of an earlier part's texts (this seeded sample of IMDb has some)
    assert finished_run["mapped"]["clean_part"] == ["success"] * MAPPED_CLEAN_PARTS
    assert 1 <= len(finished_run["mapped"]["clean_rewrite"]) < MAPPED_CLEAN_PARTS
    assert set(finished_run["mapped"]["clean_rewrite"]) == {"success"}


def test_the_promoted_version_is_champion_and_served(airflow: Airflow, finished_run: dict) -> None:
    from sentiflow import registry
    from sentiflow.serving_client import ModelServerClient

    promoted = airflow.xcom(finished_run["run_id"], "promote")
    decision = airflow.xcom(finished_run["run_id"], "select_best", "decision")
    trained = airflow.xcom(finished_run["run_id"], "train_baseline")
    assert promoted["version"] == decision["candidate_version"] == str(trained["model_version"])
    settings = MLflowSettings()
    aliases = registry.mlflow_client(settings).get_registered_model(settings.registered_model_name).aliases
    assert str(aliases["champion"]) == promoted["version"]
    server = ModelServerClient(os.environ["SENTIFLOW_SERVER_URL"], os.environ["SENTIFLOW_SERVER_ADMIN_TOKEN"])
    served = server.model()
    assert str(served["version"]) == promoted["version"]
    check = airflow.xcom(finished_run["run_id"], "inference_check")
    assert check["passed"] is True and str(check["model_version"]) == promoted["version"]


def test_operator_extra_links_resolve_from_xcom(airflow: Airflow, finished_run: dict) -> None:
    run_id = finished_run["run_id"]
    mlflow_url = os.environ["SENTIFLOW_MLFLOW_TRACKING_URI"]
    server_url = os.environ["SENTIFLOW_SERVER_URL"]
    trained = airflow.xcom(run_id, "train_baseline")
    promoted = airflow.xcom(run_id, "promote")
    model = MLflowSettings().registered_model_name

    assert airflow.links(run_id, "train_baseline")["MLflow run"] == f"{mlflow_url}/#/runs/{trained['run_id']}"
    version_url = f"{mlflow_url}/#/models/{model}/versions/{promoted['version']}"
    assert airflow.links(run_id, "select_best")["Model version"] == version_url
    assert airflow.links(run_id, "promote")["Model version"] == version_url
    for task_id in ("deploy", "inference_check"):
        links = airflow.links(run_id, task_id)
        assert links["Model server"] == f"{server_url}/ui/"
        report = requests.get(links["Check report"], timeout=HTTP_TIMEOUT_S)  # presigned: no credentials
        assert report.status_code == 200, report.text[:300]
        assert report.json()["passed"] is True and str(report.json()["model_version"]) == promoted["version"]
    # tasks without a target, and a skipped training task (no result in XCom), show no link at all
    assert not any(airflow.links(run_id, "collect").values())
    assert not any(airflow.links(run_id, "train_local").values())
    assert requests.get(f"{server_url}/ui/", timeout=HTTP_TIMEOUT_S).status_code == 200


def test_task_logs_in_the_airflow_ui_carry_the_progress_lines(airflow: Airflow, finished_run: dict) -> None:
    """What the UI's log view shows for a task (the REST log endpoint it calls)."""
    run_id = finished_run["run_id"]
    texts = {}
    for task_id in ("collect", "clean"):  # clean: the merge, which logs each split's rows and parts
        log = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1?full_content=true")
        texts[task_id] = json.dumps(log["content"])
    wrote = "[progress] collect: wrote train 300 rows, validation 150 rows, test 150 rows to s3://"
    assert wrote in texts["collect"]
    assert "[progress] clean: split 1/3 (train) 300 -> " in texts["clean"]
    assert "rows, 2 part(s)" in texts["clean"]
