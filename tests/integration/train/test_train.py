"""The training step against the real local stack (SeaweedFS S3 + MLflow server).

Mechanics use a tiny randomly initialised BERT (built from a ``BertConfig``) with the offline model's
tokenizer, so each run takes seconds; one slow test fine-tunes the real offline MiniLM.
The classifier's own checks, which need no stack, are in test_transformer_classifier.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from sentiflow import names
from sentiflow.data.snapshot import write_snapshot
from sentiflow.families.tfidf.params import BaselineParams
from sentiflow.families.tfidf.training import run_baseline
from sentiflow.families.transformer.params import TrainParams
from sentiflow.families.transformer.training import run_training
from sentiflow.progress import PROGRESS_MARK
from sentiflow.settings.components import MLflowSettings
from sentiflow.train import TrainingError
from sentiflow.train.cli import main as cli_main


# --- fixtures (tiny_model_dir is in conftest.py) --------------------------------------------------------
def _imdb(imdb_dir: Path, split: str, n: int, seed: int, max_words: int | None = None) -> pd.DataFrame:
    frame = pd.read_parquet(imdb_dir / f"{split}.parquet")
    if max_words is not None:
        frame = frame[frame["text"].str.split().str.len() <= max_words]
    # Balanced: the parquet is sorted by label, a head() would hold a single class.
    parts = [frame[frame["label"] == label].sample(n // 2, random_state=seed) for label in (0, 1)]
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


def _write(store, frames: dict[str, pd.DataFrame], label_names: list[str]) -> str:
    prefix = store.uri("datasets", "test-train", uuid.uuid4().hex[:8])
    store.ensure_bucket()
    return write_snapshot(
        store,
        prefix,
        frames,
        kind="clean",
        run_id="test",
        source={"dataset": "imdb"},
        label_names=label_names,
    )


@pytest.fixture(scope="module")
def imdb_snapshot(stack, imdb_dir: Path) -> str:
    from sentiflow.storage import ObjectStore

    frames = {
        "train": _imdb(imdb_dir, "train", 400, 0),
        "validation": _imdb(imdb_dir, "train", 200, 1),
        "test": _imdb(imdb_dir, "test", 200, 2),
    }
    return _write(ObjectStore(), frames, ["neg", "pos"])


@pytest.fixture(scope="module")
def three_class_snapshot(stack) -> str:
    """Synthetic 3-class reviews whose class is given by its vocabulary (learnable in a few steps)."""
    from sentiflow.storage import ObjectStore

    rng = np.random.default_rng(0)
    words = {
        0: ["awful", "terrible", "boring", "worst", "hate"],
        1: ["okay", "average", "fine", "mediocre", "plain"],
        2: ["wonderful", "brilliant", "great", "love", "superb"],
    }

    def split(n: int) -> pd.DataFrame:
        labels = rng.integers(0, 3, n)
        texts = [" ".join(rng.choice(words[int(y)], 6)) + " film" for y in labels]
        return pd.DataFrame({"text": texts, "label": labels})

    frames = {"train": split(240), "validation": split(60), "test": split(60)}
    return _write(ObjectStore(), frames, ["negative", "neutral", "positive"])


def tiny_params(model_dir: Path, **overrides) -> TrainParams:
    values = {
        "model_name": str(model_dir),
        "num_train_epochs": 2,
        "per_device_train_batch_size": 16,
        "learning_rate": 1e-3,
        "max_length": 64,
        "train_subset_size": 96,
        "eval_subset_size": 48,
        "seed": 7,
    }
    values.update(overrides)
    return TrainParams(**values)


def _versions(name: str) -> list:
    try:
        return MlflowClient().search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException:
        return []


def _model_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


# --- transformer -----------------------------------------------------------------------------------------
def test_transformer_run_logs_metrics_artifacts_and_registers_a_servable_version(
    imdb_snapshot: str, tiny_model_dir: Path, caplog
) -> None:
    registered = _model_name()
    # bf16 mixed precision on every CPU (emulated where it is not native): the shipped ONNX file must still
    # be a plain fp32 one a CPU opens, not a trace of the trainer's autocast wrapper
    params = tiny_params(tiny_model_dir, bf16="on")
    with caplog.at_level(logging.INFO, logger="sentiflow.train.progress_callback"):
        result = run_training(imdb_snapshot, params, registered_model_name=registered)

    # the progress callback is wired into the Trainer: 96 rows in batches of 16 for 2 epochs
    progress = [r.getMessage() for r in caplog.records if r.name == "sentiflow.train.progress_callback"]
    assert progress[0] == f"{PROGRESS_MARK} train: 12 steps of 16 samples over 2 epoch(s)"
    assert any(line.startswith(f"{PROGRESS_MARK} train: 12/12 (100%) | ") for line in progress), progress
    assert any("epoch 1 done at step 6/12" in line for line in progress), progress

    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert (
        run.info.experiment_id
        == mlflow.get_experiment_by_name(MLflowSettings().experiment_name).experiment_id
    )
    assert run.data.tags[names.TAG_MODEL_FAMILY] == names.FAMILY_TRANSFORMER
    assert run.data.tags[names.TAG_DATASET] == "imdb"
    assert run.data.tags[names.TAG_DATASET_MANIFEST] == imdb_snapshot
    assert run.data.tags[names.TAG_GIT_COMMIT]
    assert run.data.params[names.MAX_LENGTH] == "64"
    # per-epoch metrics, one point per epoch; validation metrics get one more point after the last epoch:
    # the registered (best-epoch) model's, so that the run's latest val_* describe what selection picks
    assert [m.step for m in client.get_metric_history(result.run_id, names.TRAIN_LOSS)] == [1, 2]
    for metric in (names.VAL_LOSS, names.VAL_F1, names.VAL_AUC, names.VAL_ACCURACY):
        history = client.get_metric_history(result.run_id, metric)
        assert [m.step for m in history] == [1, 2, 3], metric
    assert run.data.metrics[names.VAL_F1] == pytest.approx(run.data.metrics[names.BEST_VAL_F1], abs=1e-6)
    for metric in (*names.TEST_METRICS, *names.SUMMARY_METRICS):
        assert metric in run.data.metrics, metric
    assert 0.0 <= run.data.metrics[names.split_metric("test", "accuracy")] <= 1
    assert run.data.metrics[names.BEST_EPOCH] in (1.0, 2.0)

    artifacts = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    for name in (
        "confusion_matrix_val.png",
        "confusion_matrix_test.png",
        "roc_curve_test.png",
        "training_history.png",
        "metrics.json",
        "classification_report.txt",
        "dataset_manifest.json",
    ):
        assert f"evaluation/{name}" in artifacts, name

    # one version, tagged with its family and metrics
    versions = _versions(registered)
    assert [v.version for v in versions] == [result.model_version]
    tags = versions[0].tags
    assert tags[names.TAG_MODEL_FAMILY] == names.FAMILY_TRANSFORMER
    assert float(tags[names.BEST_VAL_F1]) == pytest.approx(result.metrics[names.BEST_VAL_F1], rel=1e-4)
    assert names.split_metric("test", "f1") in tags

    # servable as-is
    model = mlflow.pyfunc.load_model(result.model_uri)
    out = model.predict(["A wonderful, moving film.", "Dreadful."])
    assert list(out.columns) == ["label", "label_id", "score_neg", "score_pos"]
    assert set(out["label"]) <= {"neg", "pos"}
    np.testing.assert_allclose(out[["score_neg", "score_pos"]].sum(axis=1), 1.0, rtol=1e-5)
    classifier = model.unwrap_python_model().classifier
    assert classifier.family == names.FAMILY_TRANSFORMER and classifier.max_length == 64
    # and it ships the server's int8 ONNX file, built once here rather than by every replica
    from sentiflow.families.transformer.onnx_runtime import shipped_onnx_model

    assert run.data.tags[names.TAG_ONNX_SHIPPED] == "onnx-int8"
    assert shipped_onnx_model(classifier, "onnx-int8") is not None


def test_three_classes_train_and_serve(three_class_snapshot: str, tiny_model_dir: Path) -> None:
    registered = _model_name()
    result = run_training(
        three_class_snapshot,
        tiny_params(tiny_model_dir, num_train_epochs=3, learning_rate=3e-3, train_subset_size=None),
        registered_model_name=registered,
    )
    assert names.split_metric("test", "auc") in result.metrics
    assert result.metrics[names.split_metric("test", "accuracy")] > 0.6  # chance is 1/3
    out = mlflow.pyfunc.load_model(result.model_uri).predict(["wonderful superb great love film"])
    assert list(out.columns) == ["label", "label_id", "score_negative", "score_neutral", "score_positive"]


# --- baseline --------------------------------------------------------------------------------------
def test_baseline_registers_in_the_same_model_with_its_family(imdb_snapshot: str) -> None:
    registered = _model_name()
    result = run_baseline(imdb_snapshot, BaselineParams(C=4.0), registered_model_name=registered)
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.TAG_MODEL_FAMILY] == names.FAMILY_TFIDF
    for metric in (*names.VAL_METRICS, *names.TEST_METRICS, names.FIT_TIME_S, names.PREDICT_TIME_MS_PER_1K):
        assert metric in run.data.metrics, metric
    assert result.metrics[names.split_metric("test", "accuracy")] > 0.65  # 400 reviews; chance is 0.5
    (version,) = _versions(registered)
    assert version.tags[names.TAG_MODEL_FAMILY] == names.FAMILY_TFIDF
    out = mlflow.pyfunc.load_model(result.model_uri).predict(["a great movie"])
    assert out.loc[0, "label"] in {"neg", "pos"}
    # above its row cap the baseline fails the run before fitting, naming the way out, and registers nothing
    with pytest.raises(TrainingError, match=r"max_train_rows.*train_subset_size"):
        run_baseline(imdb_snapshot, BaselineParams(max_train_rows=100), registered_model_name=registered)
    assert len(_versions(registered)) == 1


# --- failures change nothing ---------------------------------------------------------------------------
def _failed_runs_since(start_ms: int) -> list:
    experiment = mlflow.get_experiment_by_name(MLflowSettings().experiment_name)
    runs = MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=f"attributes.start_time >= {start_ms}"
    )
    return [r for r in runs if r.info.status == "FAILED"]


def test_bad_labels_fail_the_run_and_register_nothing(stack, imdb_dir: Path, tiny_model_dir: Path) -> None:
    import time

    from sentiflow.storage import ObjectStore

    frame = _imdb(imdb_dir, "train", 40, 3)
    bad = frame.copy()
    bad.loc[0, "label"] = 5  # the manifest will name two labels
    # The snapshot writer refuses such a split itself, so write it with six names, then make the (signed)
    # manifest lie about the labels, as a bug in a step could: training must still refuse it.
    from sentiflow.data.snapshot import read_manifest, write_manifest

    store = ObjectStore()
    six = ["neg", "pos", "a", "b", "c", "d"]
    uri = _write(store, {"train": bad, "validation": frame, "test": frame}, six)
    lying = read_manifest(store, uri).model_copy(update={"label_names": ["neg", "pos"]})
    write_manifest(store, uri.rsplit("/", 1)[0], lying)
    registered = _model_name()
    start_ms = int(time.time() * 1000) - 1
    with pytest.raises(TrainingError, match=r"label ids \[5\] outside \[0, 2\)"):
        run_training(uri, tiny_params(tiny_model_dir), registered_model_name=registered)
    assert _versions(registered) == []
    failed = _failed_runs_since(start_ms)
    assert len(failed) == 1
    assert "outside" in failed[0].data.tags[names.TAG_ERROR]


def test_nan_loss_fails_the_run_and_registers_nothing(imdb_snapshot: str, tiny_model_dir: Path) -> None:
    registered = _model_name()
    with pytest.raises(TrainingError, match=r"loss (became|is) nan"):
        run_training(
            imdb_snapshot,
            tiny_params(tiny_model_dir, learning_rate=1e30, early_stopping_patience=0),
            registered_model_name=registered,
        )
    assert _versions(registered) == []


def test_cli_writes_result_json_and_xcom(
    imdb_snapshot: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    xcom = tmp_path / "xcom"
    xcom.mkdir()
    monkeypatch.setenv("SENTIFLOW_TRAIN_XCOM_DIR", str(xcom))
    output = tmp_path / "out" / "result.json"
    registered = _model_name()
    code = cli_main(
        [
            "--manifest-uri",
            imdb_snapshot,
            "--model-name",
            str(tiny_model_dir),
            "--num-train-epochs",
            "1",
            "--max-length",
            "32",
            "--train-subset-size",
            "48",
            "--eval-subset-size",
            "32",
            "--registered-model-name",
            registered,
            "--output-json",
            str(output),
        ]
    )
    assert code == 0
    result = json.loads(output.read_text())
    assert json.loads((xcom / "return.json").read_text()) == result
    assert set(result) >= {"run_id", "model_version", "model_uri", "metrics"}
    assert result["model_uri"] == f"models:/{registered}/{result['model_version']}"
    assert f"mlflow run id: {result['run_id']}" in capsys.readouterr().out


def test_cli_rejects_unknown_and_invalid_params(imdb_snapshot: str, capsys) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli_main(["--manifest-uri", imdb_snapshot, "--params-json", '{"learning_rat": 0.1}'])
    assert excinfo.value.code == 2
    assert "learning_rat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--manifest-uri", imdb_snapshot, "--truncation", "middle"])


def test_unreachable_mlflow_fails_fast_with_exit_code_1(
    imdb_snapshot: str, tiny_model_dir: Path, monkeypatch, capsys
) -> None:
    from sentiflow.localstack import stack as localstack

    dead = f"http://127.0.0.1:{localstack.free_port()}"
    monkeypatch.setenv("SENTIFLOW_MLFLOW_TRACKING_URI", dead)
    code = cli_main(["--manifest-uri", imdb_snapshot, "--model-name", str(tiny_model_dir)])
    assert code == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and dead in err


def test_missing_snapshot_is_a_clear_error(stack, tiny_model_dir: Path) -> None:
    from sentiflow.storage import ObjectStore

    missing = str(ObjectStore().uri("datasets", "nope", "manifest.json"))
    with pytest.raises(TrainingError, match="no manifest"):
        run_training(missing, tiny_params(tiny_model_dir), register_model=False)


# --- the real pretrained model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_imdb_snapshot(stack, imdb_dir: Path) -> str:
    """IMDb reviews of at most 45 words, so 64 tokens hold nearly all of each: the real model learns from
    the whole review at a quarter of the compute of full reviews at 128 tokens. Validation comes from the
    test split, so no validation review was trained on."""
    from sentiflow.storage import ObjectStore

    frames = {
        "train": _imdb(imdb_dir, "train", 256, 0, max_words=45),
        "validation": _imdb(imdb_dir, "test", 160, 1, max_words=45),
        "test": _imdb(imdb_dir, "test", 100, 2, max_words=45),
    }
    return _write(ObjectStore(), frames, ["neg", "pos"])


@pytest.mark.slow
def test_minilm_fine_tunes_well_above_chance(short_imdb_snapshot: str, offline_model: Path) -> None:
    # 32 optimizer steps (256 reviews, 2 epochs) at a higher rate and no warm-up: a few steps of 5e-5 with
    # warm-up and decay leave the freshly initialised head at chance. The full-size quality figure is
    # benchmarks/transformer_quality.py's.
    params = TrainParams(
        model_name=str(offline_model),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        learning_rate=1.5e-4,
        warmup_ratio=0.0,
        max_length=64,
        train_subset_size=256,
        eval_subset_size=160,
    )
    result = run_training(short_imdb_snapshot, params, register_model=False)
    assert result.metrics[names.VAL_ACCURACY] > 0.7, result.metrics
