"""The README's main command: run ``sentiment_pipeline`` end to end on the embedded local stack.

Brings up SeaweedFS, MLflow and the model server on 127.0.0.1 (``sentiflow.localstack``), migrates Airflow's
SQLite DB, runs the DAG once with ``dag.test()`` (train_backend=local) and prints what happened: snapshots,
MLflow runs and metrics, the champion, the served version and the inference check. Demo parameters are sized
to finish in minutes on a 2-core CPU. Uses the offline copies in ../shared when the Hugging Face Hub is
unreachable. Pass a JSON object as the first argument to override any DAG parameter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from sentiflow import localstack
from sentiflow.localstack import REPO_ROOT, StackSettings

SHARED = REPO_ROOT.parent / "shared"
OFFLINE_IMDB = SHARED / "data" / "imdb"
OFFLINE_MODEL = SHARED / "models" / "all-MiniLM-L6-v2"

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


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def offline_overrides() -> dict[str, str]:
    """Dataset and model: the Hub names when the Hub answers, else the offline copies in ../shared."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    if not offline:
        return {}
    overrides = {}
    if (OFFLINE_IMDB / "train.parquet").exists():
        overrides["dataset"] = str(OFFLINE_IMDB)
    if (OFFLINE_MODEL / "config.json").exists():
        overrides["model_name"] = str(OFFLINE_MODEL)
    return overrides


def run_pipeline(conf: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run the DAG in a child process (Airflow reads its environment at import time)."""
    proc = subprocess.run(
        [sys.executable, "-m", "sentiflow.pipeline.runner", "sentiment_pipeline", json.dumps(conf)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=None,  # Airflow's task logs stream to the terminal
        text=True,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"the pipeline run did not finish (exit code {proc.returncode})")
    return json.loads(line[len("RESULT") :])


def summary(result: dict[str, Any], stack: StackSettings) -> dict[str, Any]:
    from sentiflow.config import MLflowSettings
    from sentiflow.pipeline import registry
    from sentiflow.serving_client import ModelServerClient

    xcom = result["xcom"]
    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    model = client.get_registered_model(settings.registered_model_name)
    served = ModelServerClient(stack.server_url, stack.server_token).model()
    runs = {}
    for task in ("train_local", "train_baseline"):
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
        env["HF_HUB_OFFLINE"] = env["HF_DATASETS_OFFLINE"] = "1"
    print(f"running sentiment_pipeline with {json.dumps(conf)}", flush=True)
    result = run_pipeline(conf, env)
    report = summary(result, stack)
    report["wall_s"] = round(time.monotonic() - started, 1)
    print("\n=== sentiflow demo summary ===")
    print(json.dumps(report, indent=2, default=str))
    print(f"\nMLflow UI: {stack.mlflow_uri}   web page: {stack.server_url}/ui/   stop everything: make down")
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
