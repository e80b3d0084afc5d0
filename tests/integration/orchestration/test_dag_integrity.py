"""DAG integrity: the DAGs import without errors, fast, without heavy imports; tags, retries, params.

Airflow is parsed in a child process with its own AIRFLOW_HOME (as the dag-processor would), so this test
never touches a user's ~/airflow and never depends on what other tests imported first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

PARSE = r"""
import json, sys, time
# The dag-processor pre-imports the modules a DAG file imports (parsing_pre_import_modules) before it
# times each file; do the same, so the timing measures the DAG files themselves.
import airflow.sdk
import airflow.providers.cncf.kubernetes.operators.pod
import sentiflow.orchestration.data_tasks, sentiflow.orchestration.training_tasks
import sentiflow.orchestration.release_tasks
import sentiflow.orchestration.dag_params
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in ("torch", "transformers", "mlflow", "sklearn", "datasets") if m in sys.modules)
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()},
       "durations": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
       "heavy": heavy, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags), "schedule": str(dag.schedule), "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs, "doc_md": bool(dag.doc_md),
        "paused_upon_creation": dag.is_paused_upon_creation,
        "params": {k: {"default": p.value, "description": p.description, "schema": p.schema}
                   for k, p in dag.params.items()},
        "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "backoff": t.retry_exponential_backoff,
                              "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                              "mapped": bool(getattr(t, "is_mapped", False)),
                              "downstream": sorted(t.downstream_task_ids)}
                  for t in dag.tasks},
    }
print("JSON" + json.dumps(out, default=str))
"""


def airflow_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
    }


def run_airflow_script(script: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**airflow_env(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")), None)
    assert proc.returncode == 0 and line, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(line[4:])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_airflow_script(PARSE, tmp_path_factory.mktemp("dagbag"), str(REPO / "dags"))


def test_dags_import_without_errors_fast_and_light(parsed: dict) -> None:
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {"sentiment_pipeline", "sentiment_sweep", "sentiment_release"}
    assert parsed["heavy"] == [], "DAG files must not import torch/transformers/mlflow at parse time"
    for file, seconds in parsed["durations"].items():
        assert seconds < 1.0, f"{file} took {seconds:.2f}s to parse"


def test_pipeline_schedule_tags_doc_and_shape(parsed: dict) -> None:
    dag = parsed["dags"]["sentiment_pipeline"]
    assert dag["schedule"] == "@weekly" and dag["catchup"] is False and dag["max_active_runs"] == 1
    assert "sentiflow" in dag["tags"] and dag["doc_md"]
    tasks = dag["tasks"]
    assert tasks["choose_training"]["downstream"] == ["train_baseline", "train_kubernetes", "train_local"]
    # clean: mapped over the raw parts, copies across parts found on digests, then the manifest alone
    assert tasks["collect"]["downstream"] == ["clean", "clean_part", "clean_plan"]
    assert tasks["clean_plan"]["downstream"] == ["clean_part"]
    assert tasks["clean_part"]["downstream"] == ["clean", "clean_dedup"]
    assert tasks["clean_dedup"]["downstream"] == ["clean_rewrite"]
    assert tasks["clean_rewrite"]["downstream"] == ["clean"]
    assert tasks["clean_part"]["mapped"] and tasks["clean_rewrite"]["mapped"]
    assert not tasks["clean"]["mapped"] and tasks["clean"]["trigger_rule"] == "none_failed"
    # feedback → training, lineage after training, drift beside it and outside the release path
    assert tasks["clean"]["downstream"] == ["training_data"]
    # wired by outputs (XComArgs): every task that reads the training data or a training result is downstream
    assert tasks["training_data"]["downstream"] == [
        "choose_training", "drift_report", "feedback_lineage",
        "train_baseline", "train_kubernetes", "train_local",
    ]  # fmt: skip
    for train in ("train_baseline", "train_kubernetes", "train_local"):
        assert tasks[train]["downstream"] == ["feedback_lineage", "select_best"], train
    assert tasks["feedback_lineage"]["downstream"] == ["select_best"]
    assert tasks["feedback_lineage"]["trigger_rule"] == "none_failed_min_one_success"
    assert tasks["drift_report"]["downstream"] == []
    assert tasks["select_best"]["downstream"] == ["keep_champion", "promote"]
    assert tasks["select_best"]["trigger_rule"] == "none_failed_min_one_success"
    assert tasks["promote"]["downstream"] == ["deploy"] and tasks["deploy"]["downstream"] == [
        "inference_check"
    ]
    assert all(t["owner"] == "ml-platform" for t in tasks.values())


def test_io_tasks_retry_with_backoff_and_have_timeouts(parsed: dict) -> None:
    for dag_id, dag in parsed["dags"].items():
        tasks = dag["tasks"]
        clean = ("clean_plan", "clean_part", "clean_dedup", "clean_rewrite", "clean")
        data = () if dag_id == "sentiment_release" else ("collect", *clean)
        for task_id in (*data, "select_best", "promote"):
            assert tasks[task_id]["retries"] >= 1 and tasks[task_id]["backoff"], task_id
        for task_id in (*data, "deploy", "inference_check"):
            assert tasks[task_id]["timeout"], task_id


def test_the_release_dag_runs_only_when_triggered_through_the_pipelines_release_tasks(parsed: dict) -> None:
    """``sentiment_release``: no schedule, unpaused (so a triggered run runs), one at a time; the named
    version is looked up, gated by select_best, then the same promote → deploy → inference_check as the
    pipeline."""
    dag = parsed["dags"]["sentiment_release"]
    assert dag["schedule"] == "None" and dag["paused_upon_creation"] is False and dag["max_active_runs"] == 1
    assert "sentiflow" in dag["tags"] and dag["doc_md"]
    tasks = dag["tasks"]
    assert tasks["validate_params"]["downstream"] == ["inference_check", "registered_version", "select_best"]
    assert tasks["registered_version"]["downstream"] == ["select_best"]
    assert tasks["select_best"]["downstream"] == ["keep_champion", "promote"]
    assert tasks["promote"]["downstream"] == ["deploy"]
    assert tasks["deploy"]["downstream"] == ["inference_check"]
    assert tasks["registered_version"]["retries"] >= 1 and tasks["validate_params"]["retries"] == 0
    pipeline = parsed["dags"]["sentiment_pipeline"]["tasks"]
    for task_id in ("promote", "deploy", "inference_check", "keep_champion"):  # the same tasks
        assert {k: v for k, v in tasks[task_id].items() if k != "downstream"} == {
            k: v for k, v in pipeline[task_id].items() if k != "downstream"
        }, task_id
    params = dag["params"]
    assert {"version", "requested_by", "force_promote", "force_reason", "seed"} <= set(params)
    assert "check_texts" in params and "selection_scope" not in params
    for name, p in params.items():
        assert p["description"], name


def test_params_have_types_descriptions_and_defaults(parsed: dict) -> None:
    params = parsed["dags"]["sentiment_pipeline"]["params"]
    required = {
        "dataset", "model_name", "num_train_epochs", "per_device_train_batch_size", "learning_rate",
        "weight_decay", "max_length", "train_subset_size", "seed", "truncation", "run_baseline",
        "train_backend", "selection_metric", "min_improvement", "min_metric_value", "check_texts",
        "check_csv_uri", "check_min_accuracy", "check_cases_per_class", "check_accuracy_margin", "confidence",
        "registered_model_name", "label_names",
    }  # fmt: skip
    assert required <= set(params)
    for name, p in params.items():
        assert p["description"], name
        assert "type" in p["schema"] or "enum" in p["schema"], name
    assert params["train_backend"]["schema"]["enum"] == ["kubernetes", "local"]
    assert params["use_feedback"]["default"] is True  # the weekly schedule retrains with feedback
    assert params["force_promote"]["default"] is False and params["train_transformer"]["default"] is True
    assert params["selection_metric"]["default"] == "best_val_f1"
    assert params["confidence"]["default"] == 0.95 and params["check_min_accuracy"]["default"] is None
    assert params["check_texts"]["default"] == [] and params["check_cases_per_class"]["default"] == 4
    sweep = parsed["dags"]["sentiment_sweep"]
    assert "grid" in sweep["params"] and sweep["schedule"] == "None"
    assert sweep["tasks"]["select_best"]["downstream"] == ["keep_champion", "promote"]


PARAM_DEFAULTS = r"""
import json
from sentiflow.orchestration.dag_params import PIPELINE, SWEEP, dag_form
print("JSON" + json.dumps({"pipeline": dag_form(PIPELINE)["train_backend"].value,
                           "sweep": dag_form(SWEEP)["train_backend"].value,
                           "feedback": dag_form(PIPELINE)["use_feedback"].value}))
"""


@pytest.mark.parametrize(
    ("env", "backend", "feedback"),
    [
        ({}, "kubernetes", True),
        ({"SENTIFLOW_PIPELINE_TRAIN_BACKEND": "local", "SENTIFLOW_PIPELINE_USE_FEEDBACK": "0"}, "local", 0),
    ],
)
def test_param_defaults_follow_the_deployment_environment(tmp_path, monkeypatch, env, backend, feedback):
    """The compose stack exports SENTIFLOW_PIPELINE_TRAIN_BACKEND; the trigger form's default follows it."""
    for name in ("SENTIFLOW_PIPELINE_TRAIN_BACKEND", "SENTIFLOW_PIPELINE_USE_FEEDBACK"):
        monkeypatch.delenv(name, raising=False)
    out = run_airflow_script(PARAM_DEFAULTS, tmp_path, env=env)
    assert out == {"pipeline": backend, "sweep": backend, "feedback": bool(feedback)}


def test_unknown_train_backend_in_the_environment_is_a_clear_error():
    from pydantic import ValidationError

    from sentiflow.orchestration.settings import PipelineSettings

    with pytest.raises(ValidationError, match="train_backend"):
        PipelineSettings(train_backend="gpu")
