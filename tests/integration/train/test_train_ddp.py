"""Multi-GPU training on CPU: ``gpus: 2`` runs the entrypoint under torchrun, two DDP processes (gloo).

Against the real local MLflow server: two processes train, and exactly one MLflow run and one registry
version come out of it (only rank 0 talks to MLflow), with the result JSON and the XCom file from rank 0.
The model is the conftest's tiny random BERT with the real tokenizer, on a few dozen IMDb rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from sentiflow.names import GPU_UTILIZATION_MEAN_PCT, GPUS
from sentiflow.settings.components import MLflowSettings
from sentiflow.train.cli import main as cli_main
from sentiflow.train.distributed import entrypoint_command
from tests.integration.train.test_train import _imdb, _model_name, _versions, _write


def test_entrypoint_command_is_plain_python_for_one_gpu_and_torchrun_for_more() -> None:
    assert entrypoint_command(1) == ["python", "-m", "sentiflow.train"]
    command = entrypoint_command(4, python="/opt/venv/bin/python")
    assert command[:3] == ["/opt/venv/bin/python", "-m", "torch.distributed.run"]  # the torchrun program
    assert "--nproc-per-node=4" in command and "--standalone" in command
    assert command[-2:] == ["-m", "sentiflow.train"]


@pytest.fixture(scope="module")
def small_snapshot(stack, imdb_dir: Path) -> str:
    from sentiflow.storage import ObjectStore

    frames = {
        "train": _imdb(imdb_dir, "train", 48, 3),
        "validation": _imdb(imdb_dir, "train", 24, 4),
        "test": _imdb(imdb_dir, "test", 24, 5),
    }
    return _write(ObjectStore(), frames, ["neg", "pos"])


@pytest.mark.slow  # two torchrun processes import torch, transformers and MLflow (~40 s on 2 shared cores)
def test_two_processes_make_one_run_and_one_version(
    small_snapshot: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capfd
) -> None:
    xcom = tmp_path / "xcom"
    xcom.mkdir()
    monkeypatch.setenv("SENTIFLOW_TRAIN_XCOM_DIR", str(xcom))
    registered = _model_name()
    output = tmp_path / "result.json"
    params = {
        "model_name": str(tiny_model_dir),
        "num_train_epochs": 2,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "max_length": 32,
        "device": "cpu",
        "gpus": 2,
        "seed": 11,
    }
    started_ms = int(time.time() * 1000)
    code = cli_main(
        [
            "--manifest-uri",
            small_snapshot,
            "--params-json",
            json.dumps(params),
            "--registered-model-name",
            registered,
            "--output-json",
            str(output),
        ]
    )
    logs = capfd.readouterr()
    assert code == 0, logs.err[-3000:]
    assert "rank 1 of 2 done" in logs.err  # the second process trained and left the reporting to rank 0

    result = json.loads(output.read_text())
    assert json.loads((xcom / "return.json").read_text()) == result
    experiment = mlflow.get_experiment_by_name(MLflowSettings().experiment_name)
    runs = MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"params.{GPUS} = '2' and attributes.start_time >= {started_ms}",
    )
    assert [r.info.run_id for r in runs] == [result["run_id"]]
    assert runs[0].info.status == "FINISHED"
    versions = _versions(registered)
    assert [v.version for v in versions] == [result["model_version"]] == ["1"]
    assert versions[0].run_id == result["run_id"]
    # both epochs evaluated on the gathered validation predictions of both ranks
    history = MlflowClient().get_metric_history(result["run_id"], "val_f1")
    assert sorted(m.step for m in history)[:2] == [1, 2]
    assert result["metrics"]["fit_time_s"] > 0 and GPU_UTILIZATION_MEAN_PCT not in result["metrics"]
