"""What every family's training shares around its own fit: the snapshot's splits, then evaluate → artifacts
→ registry version.

A family's training (``families/<name>/training.py``) loads the splits with ``load_tagged``, fits, and hands
its classifier to ``finish``, so every family is measured and logged the same way and selection compares them
fairly. In a distributed run (torchrun, ``gpus > 1``) every rank trains, and only rank 0 opens the MLflow run,
evaluates, logs and registers: N processes make one run and one registry version.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from sentiflow.modeling.base import TextClassifier
from sentiflow.names import BEST_VAL_F1, PREDICT_TIME_MS_PER_1K, VAL_F1
from sentiflow.progress import ProgressReporter
from sentiflow.train.artifacts import write_evaluation_artifacts
from sentiflow.train.data import TrainingData, label_ids, load_training_data, text_chunks
from sentiflow.train.metrics import classification_metrics
from sentiflow.train.tracking import register, tag_dataset

log = logging.getLogger(__name__)


class TrainResult(BaseModel):
    """What the DAG and the KubernetesPodOperator XCom get back (``model_dump()`` is the XCom JSON)."""

    run_id: str
    model_version: str | None
    model_uri: str | None
    model_family: str
    metrics: dict[str, float]


#: Prediction over a split runs in chunks of this many texts, with a progress line every few seconds.
PREDICT_CHUNK = 256


def _predict_progress(classifier: TextClassifier, dataset: Any, split: str) -> np.ndarray:
    """``predict_proba`` over a split in chunks, logging how far it is (a transformer on CPU takes minutes on
    25k); only one chunk of texts is read out of the memory-mapped split at a time."""
    total = len(dataset)
    reporter = ProgressReporter(f"predict {split}", total, log.info, unit="texts")
    parts = []
    for texts in text_chunks(dataset, PREDICT_CHUNK):
        parts.append(classifier.predict_proba(texts))
        if total > PREDICT_CHUNK:
            reporter.update(sum(len(p) for p in parts))
    return np.concatenate(parts) if parts else classifier.predict_proba([])


def finish(
    run: Any,
    classifier: TextClassifier,
    data: TrainingData,
    manifest_uri: str,
    summary: dict[str, float],
    *,
    history: list[dict[str, float]] | None,
    register_model: bool,
    registered_model_name: str | None,
) -> TrainResult:
    """Evaluate on validation and test, log metrics and artifacts, then (last) register the model."""
    import mlflow

    val_labels = label_ids(data.validation)
    test_labels = label_ids(data.test)
    val_probs = _predict_progress(classifier, data.validation, "validation")
    started = time.perf_counter()
    test_probs = _predict_progress(classifier, data.test, "test")
    ms_per_1k = (time.perf_counter() - started) * 1000.0 * 1000.0 / max(len(data.test), 1)
    val_metrics = classification_metrics("val", val_labels, val_probs)
    test_metrics = classification_metrics("test", test_labels, test_probs)

    metrics = {**summary, PREDICT_TIME_MS_PER_1K: ms_per_1k}
    # Log the validation metrics of the model being registered (for a transformer: the best epoch, reloaded)
    # one step after the last epoch, so the run's latest val_* values, which selection reads, describe it.
    final_step = max(int(h["epoch"]) for h in history) + 1 if history else 0
    mlflow.log_metrics(val_metrics, step=final_step)
    metrics.setdefault(BEST_VAL_F1, val_metrics[VAL_F1])
    mlflow.log_metrics({**metrics, **test_metrics})
    all_metrics = {**val_metrics, **test_metrics, **metrics}

    with tempfile.TemporaryDirectory(prefix="sentiflow-artifacts-") as tmp:
        write_evaluation_artifacts(
            Path(tmp),
            label_names=data.label_names,
            val=(val_labels, val_probs),
            test=(test_labels, test_probs),
            metrics=all_metrics,
            manifest=data.manifest.model_dump(mode="json"),
            manifest_uri=manifest_uri,
            history=history,
        )
        mlflow.log_artifacts(tmp, artifact_path="evaluation")

    version = model_uri = None
    if register_model:
        version, model_uri = register(classifier, all_metrics, registered_model_name)
        log.info("registered version %s (%s) from run %s", version, model_uri, run.info.run_id)
    return TrainResult(
        run_id=run.info.run_id,
        model_version=version,
        model_uri=model_uri,
        model_family=classifier.family,
        metrics=all_metrics,
    )


def load_data(manifest_uri: str, params: Any) -> TrainingData:
    """The snapshot's splits, subset as ``params`` asks (its ``train_subset_size``, ``eval_subset_size`` and
    ``seed``: the same rows on every rank, the seed decides)."""
    return load_training_data(
        manifest_uri,
        train_subset_size=params.train_subset_size,
        eval_subset_size=params.eval_subset_size,
        seed=params.seed,
    )


def load_tagged(manifest_uri: str, params: Any) -> TrainingData:
    """The snapshot's splits; the dataset's lineage tagged on the active run."""
    data = load_data(manifest_uri, params)
    tag_dataset(data.manifest, manifest_uri)
    return data
