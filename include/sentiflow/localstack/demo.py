"""The README's main command: run ``sentiment_pipeline`` end to end on the embedded local stack.

Brings up SeaweedFS, MLflow and the model server on 127.0.0.1 (``sentiflow.localstack.stack``), migrates
Airflow's SQLite DB, runs the DAG once with ``dag.test()`` (train_backend=local) and prints what happened:
snapshots, MLflow runs and metrics, the champion, the served version and the inference check. Then it leaves
Airflow running (``sentiflow.localstack.airflow_standalone``, what ``make airflow`` starts), so the web
page's Deploy button can ask it for release runs. Demo parameters are sized to finish in minutes on a 2-core
CPU. Uses the offline copies in ../shared when the Hugging Face Hub is
unreachable. Pass a JSON object as the first argument to override any DAG parameter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sentiflow.localstack import stack as localstack
from sentiflow.localstack.demo_monitor import DagTestMonitor
from sentiflow.localstack.offline import HF_OFFLINE_VARS, OFFLINE_IMDB, offline_overrides
from sentiflow.localstack.stack import REPO_ROOT, StackSettings

#: Small enough for a 2-core CPU in minutes, large enough that the models learn something real.
DEMO_CONF: dict[str, Any] = {
    "sample_size": 2000,
    "eval_sample_size": 500,
    "num_train_epochs": 1,
    "max_length": 128,
    "per_device_train_batch_size": 16,
    "learning_rate": 5e-5,
    "train_backend": "local",
    "run_baseline": True,
}


def run_pipeline(conf: dict[str, Any], env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """Run the DAG in a child process (Airflow reads its environment at import time).

    Its output (every task's log) goes to files under ``log_dir``; the terminal gets task state changes,
    progress lines and, for a failed task, its log's tail (``DagTestMonitor``).
    """
    monitor = DagTestMonitor(log_dir)
    result_line = None
    with subprocess.Popen(
        [sys.executable, "-m", "sentiflow.orchestration.runner", "sentiment_pipeline", json.dumps(conf)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT"):
                result_line = line
            else:
                monitor.feed(line)
        code = proc.wait()
    result = json.loads(result_line[len("RESULT") :]) if result_line else None
    monitor.close(result["tasks"] if result else None)
    if result is None:
        tail = monitor.full_log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail))
        raise SystemExit(f"the pipeline run did not finish (exit code {code}); full log: {monitor.full_log}")
    result["logs"] = {"folder": str(log_dir), "failed": {k: str(v) for k, v in monitor.failed_logs().items()}}
    return result


def summary(result: dict[str, Any], stack: StackSettings) -> dict[str, Any]:
    from sentiflow import registry
    from sentiflow.serving_client import ModelServerClient
    from sentiflow.settings.components import MLflowSettings

    xcom = result["xcom"]
    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    model = client.get_registered_model(settings.registered_model_name)
    served = ModelServerClient(stack.server_url, stack.server_token).model()
    runs = {}
    from sentiflow.families.catalogue import families

    for task in [entry.task_id for entry in families().values()]:
        trained = xcom.get(task)
        if isinstance(trained, dict):
            keep = ("best_val_f1", "val_accuracy", "val_auc", "test_accuracy", "test_f1", "fit_time_s")
            runs[task] = {
                "run_id": trained.get("run_id"),
                "model_version": trained.get("model_version"),
                "family": trained.get("model_family"),
                "metrics": {k: round(v, 4) for k, v in (trained.get("metrics") or {}).items() if k in keep},
            }
    return {
        "dag_run": {"run_id": result["run_id"], "state": result["state"]},
        "tasks": result["tasks"],
        "raw_snapshot": xcom.get("collect"),
        "clean_snapshot": xcom.get("clean"),
        "runs": runs,
        "decision": xcom.get("select_best.decision"),
        "aliases": {k: str(v) for k, v in model.aliases.items()},
        "served": {k: served.get(k) for k in ("version", "run_id", "family", "loaded_at")},
        "inference_check": xcom.get("inference_check"),
        "logs": result.get("logs"),
        "links": {
            "mlflow": stack.mlflow_uri,
            "model_server": stack.server_url,
            "web_page": f"{stack.server_url}/ui/",
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    started = time.monotonic()
    stack = StackSettings()
    print("starting the embedded stack (S3, MLflow, model server) and Airflow's DB ...", flush=True)
    localstack.up(stack)
    env = {**os.environ, **localstack.client_env(stack), "TOKENIZERS_PARALLELISM": "false"}
    os.environ.update(env)

    conf = {**DEMO_CONF, **offline_overrides(), **(json.loads(args[0]) if args else {})}
    if "dataset" in conf and conf["dataset"] == str(OFFLINE_IMDB):
        env.update(dict.fromkeys(HF_OFFLINE_VARS, "1"))
    log_dir = stack.home / "logs" / "demo" / time.strftime("%Y%m%dT%H%M%S")
    print(f"running sentiment_pipeline with {json.dumps(conf)}", flush=True)
    print(f"task logs: {log_dir}/ (one file per task; dag-test.log has everything)", flush=True)
    result = run_pipeline(conf, env, log_dir)
    report = summary(result, stack)
    report["wall_s"] = round(time.monotonic() - started, 1)
    print("\n=== sentiflow demo summary ===")
    print(json.dumps(report, indent=2, default=str))
    # the web page's Deploy button asks Airflow for a run of the release DAG: leave one running for it
    from sentiflow.localstack import airflow_standalone

    print("\nstarting Airflow for the web page's Deploy button (release runs) ...", flush=True)
    airflow_standalone.up(stack)
    print(f"\nMLflow UI: {stack.mlflow_uri}   web page: {stack.server_url}/ui/   stop everything: make down")
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
