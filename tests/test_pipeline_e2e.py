"""End to end: ``sentiment_pipeline`` under ``dag.test()`` against the real local services.

S3 and MLflow from the ``stack`` fixture, the model server under gunicorn, training with the real entrypoint
(``train_backend=local``) on tiny data and a one-layer MiniLM. Three runs in order:
1. first run: versions registered, a champion set, the server serving it, the inference check passing;
2. a worse model: the gate keeps the champion, the server keeps serving it;
3. a better model whose inference check fails: the release rolls back (alias and server).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentiflow import localstack
from sentiflow.config import MLflowSettings

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline_env(stack, imdb_dir, offline_model):
    localstack.airflow_init(stack)
    localstack.start(stack, localstack.services(stack)["model-server"])
    try:
        yield stack
    finally:
        localstack.stop(stack, "model-server")


def run_pipeline(conf: dict) -> dict:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run(
        [sys.executable, "-m", "sentiflow.pipeline.runner", "sentiment_pipeline", json.dumps(conf)],
        env=env, capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(line[len("RESULT") :])


def base_conf(imdb_dir: Path, offline_model: Path, **overrides) -> dict:
    conf = {
        "dataset": str(imdb_dir),
        "sample_size": 300,
        "eval_sample_size": 150,
        "model_name": str(offline_model),
        "num_train_epochs": 1,
        "max_length": 64,
        "per_device_train_batch_size": 16,
        "train_subset_size": 128,
        "early_stopping_patience": None,
        "train_extra": {"num_hidden_layers": 1},
        "train_backend": "local",
        "run_baseline": True,
        "selection_metric": "val_f1",
        "check_min_accuracy": 0.5,
    }
    return {**conf, **overrides}


def aliases(client, settings: MLflowSettings) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(settings.registered_model_name).aliases.items()}


def test_release_keep_and_rollback(pipeline_env, imdb_dir, offline_model) -> None:
    from sentiflow.pipeline import registry
    from sentiflow.serving_client import ModelServerClient
    from sentiflow.storage import ObjectStore

    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    server = ModelServerClient(pipeline_env.server_url, pipeline_env.server_token)

    # 1. first release
    first = run_pipeline(base_conf(imdb_dir, offline_model))
    assert first["state"] == "success", first["tasks"]
    assert first["tasks"]["promote"] == "success" and first["tasks"]["keep_champion"] == "skipped"
    decision = first["xcom"]["select_best.decision"]
    champion = decision["candidate_version"]
    assert len(decision["candidates"]) == 2  # transformer and baseline, both registered
    assert aliases(client, settings) == {"champion": champion}
    assert str(server.model()["version"]) == champion
    check = first["xcom"]["inference_check"]
    assert check["passed"] and check["model_version"] == champion
    assert ObjectStore().exists(check["report_uri"] + "/summary.json")

    # 2. a worse model: champion and served version unchanged
    worse = base_conf(
        imdb_dir,
        offline_model,
        run_baseline=False,
        learning_rate=1e-9,
        train_subset_size=16,
        min_improvement=0.0,
    )
    second = run_pipeline(worse)
    assert second["state"] == "success", second["tasks"]
    assert second["tasks"]["keep_champion"] == "success" and second["tasks"]["promote"] == "skipped"
    assert "champion kept" in second["xcom"]["keep_champion"]["reason"]
    assert aliases(client, settings)["champion"] == champion
    assert str(server.model()["version"]) == champion

    # 3. a better model (baseline on 10x the data) whose check fails: rolled back
    flipped = [{"text": "A wonderful, brilliant film. I loved it.", "label": "negative"},
               {"text": "Terrible, boring, a waste of time.", "label": "positive"}]  # fmt: skip
    third = run_pipeline(
        base_conf(imdb_dir, offline_model, sample_size=3000, check_texts=flipped, check_min_accuracy=0.9)
    )
    assert third["state"] == "failed"
    assert third["tasks"]["promote"] == "success" and third["tasks"]["inference_check"] == "failed"
    failed_version = third["xcom"]["promote"]["version"]
    assert failed_version != champion
    assert aliases(client, settings).get("champion") == champion
    assert str(server.model()["version"]) == champion
    tags = client.get_model_version(settings.registered_model_name, failed_version).tags
    assert "inference check failed" in tags[registry.TAG_ROLLED_BACK]
