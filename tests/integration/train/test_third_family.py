"""A model family added as one folder plus one registration line gets everything the shipped ones get.

``extra_families/majority`` is a third family outside the library; its package in
``SENTIFLOW_TRAIN_FAMILY_PACKAGES`` is the one line that registers it. From the catalogue alone it gets its
form fields and validation, a training task in the pipeline DAG, a training run through the DAG task's own
entrypoint that registers an MLflow version, and a model server that serves it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from sentiflow import names
from sentiflow.data.snapshot import write_snapshot
from sentiflow.families.catalogue import families
from sentiflow.orchestration.dag_params import PIPELINE
from sentiflow.orchestration.local_train import train_locally
from sentiflow.orchestration.training_tasks import FAMILIES, validated
from tests.devserver import DevServer, own_registered_model
from tests.integration.orchestration.test_dag_integrity import PARSE, REPO, run_airflow_script

FAMILY = "majority"
#: The registration line, as every process (the DAG parser, the trainer, the model server) reads it.
REGISTER = {
    "SENTIFLOW_TRAIN_FAMILY_PACKAGES": '["tests.integration.train.extra_families"]',
    "PYTHONPATH": f"{REPO / 'include'}:{REPO}",
}


@pytest.fixture(scope="module")
def registered() -> Iterator[dict[str, str]]:
    saved = {key: os.environ.get(key) for key in REGISTER}
    os.environ.update(REGISTER)
    families.cache_clear()
    try:
        yield REGISTER
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        families.cache_clear()


def test_the_pipeline_dag_gives_it_a_training_task_and_form_fields(registered, tmp_path: Path) -> None:
    parsed = run_airflow_script(PARSE, tmp_path, str(REPO / "dags"), env=registered)
    assert parsed["errors"] == {}
    pipeline = parsed["dags"]["sentiment_pipeline"]
    assert "train_majority" in pipeline["tasks"]["choose_training"]["downstream"]
    assert pipeline["tasks"]["train_majority"]["retries"] == 0
    assert pipeline["params"]["majority_smoothing"]["default"] == 1.0
    assert pipeline["params"]["majority_smoothing"]["schema"]["section"] == "Training hyperparameters"
    assert pipeline["params"]["train_majority"]["default"] is True


@pytest.fixture(scope="module")
def snapshot(stack) -> str:
    from sentiflow.storage import ObjectStore

    def frame(n: int) -> pd.DataFrame:  # three in four rows positive: the majority class is "pos"
        labels = [1, 1, 1, 0] * (n // 4)
        return pd.DataFrame({"text": [f"review {i}" for i in range(n)], "label": labels})

    store = ObjectStore()
    store.ensure_bucket()
    prefix = store.uri("datasets", "test-third-family", uuid.uuid4().hex[:8])
    frames = {"train": frame(40), "validation": frame(16), "test": frame(16)}
    return write_snapshot(
        store, prefix, frames, kind="clean", run_id="test", source={}, label_names=["neg", "pos"]
    )


def test_it_trains_registers_and_is_served_through_the_same_code(
    registered, snapshot: str, stack, tmp_path_factory
) -> None:
    conf = {"majority_smoothing": 0.0, "train_transformer": False, "run_baseline": False}
    params = validated(conf, PIPELINE)  # what validate_params hands the DAG's tasks
    assert params[FAMILIES] == [FAMILY] and params[FAMILY]["smoothing"] == 0.0
    with pytest.raises(Exception, match="majority_smoothing"):
        validated({"majority_smoothing": -1}, PIPELINE)

    with own_registered_model("third-family") as model_name:
        result = train_locally(snapshot, params[FAMILY], FAMILY, env=registered, timeout_s=300)
        assert result["model_family"] == FAMILY and result["model_version"]
        assert result["metrics"][names.split_metric("test", "accuracy")] == 0.75
        server = DevServer(stack, {**registered}, state_root=tmp_path_factory.mktemp("third-family"))
        server.start()
        try:
            server.serving(result["model_version"])
            served = requests.get(f"{server.url}/model", timeout=10).json()
            assert served["version"] == result["model_version"] and served["runtime"] == "python"
            answer = requests.post(f"{server.url}/predict", json={"text": "anything at all"}, timeout=30)
            assert answer.status_code == 200, answer.text
            prediction = answer.json()["predictions"][0]
            assert prediction["label"] == "pos" and prediction["scores"]["pos"] == pytest.approx(0.75)
        finally:
            server.stop()
        assert model_name
