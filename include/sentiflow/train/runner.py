"""The training step end to end: snapshot → fit → evaluate → artifacts → registry version.

``run_training`` (transformer) and ``run_baseline`` (TF-IDF + logistic regression) share everything after
the fit, so both families are measured and logged the same way and selection compares them fairly. In a
distributed run (torchrun, ``gpus > 1``) every rank trains, and only rank 0 opens the MLflow run, evaluates,
logs and registers: N processes make one run and one registry version.
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
from sentiflow.names import (
    BEST_EPOCH,
    BEST_VAL_F1,
    EPOCH_TIME_S,
    FAMILY_TFIDF,
    FAMILY_TRANSFORMER,
    FIT_TIME_S,
    PREDICT_TIME_MS_PER_1K,
    TAG_BASE_MODEL,
    TRAIN_SAMPLES_PER_S,
    VAL_F1,
)
from sentiflow.progress import ProgressReporter
from sentiflow.train.artifacts import write_evaluation_artifacts
from sentiflow.train.data import TrainingData, label_ids, load_training_data, text_chunks
from sentiflow.train.distributed import is_main_process
from sentiflow.train.errors import TrainingError
from sentiflow.train.metrics import classification_metrics
from sentiflow.train.params import BaselineParams, TrainParams
from sentiflow.train.tracking import register, tag_dataset, training_run

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


def _predict_timed(classifier: TextClassifier, dataset: Any) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    probs = _predict_progress(classifier, dataset, "test")
    elapsed = time.perf_counter() - started
    return probs, elapsed * 1000.0 * 1000.0 / max(len(dataset), 1)


def _finish(
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
    test_probs, ms_per_1k = _predict_timed(classifier, data.test)
    val_metrics = classification_metrics("val", val_labels, val_probs)
    test_metrics = classification_metrics("test", test_labels, test_probs)

    metrics = dict(summary)
    metrics[PREDICT_TIME_MS_PER_1K] = ms_per_1k
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


def _load(manifest_uri: str, params: TrainParams | BaselineParams) -> TrainingData:
    """The snapshot's splits, subset as ``params`` asks (the same rows on every rank: the seed decides)."""
    return load_training_data(
        manifest_uri,
        train_subset_size=params.train_subset_size,
        eval_subset_size=params.eval_subset_size,
        seed=params.seed,
    )


def _load_tagged(manifest_uri: str, params: TrainParams | BaselineParams) -> TrainingData:
    """The snapshot's splits; the dataset's lineage tagged on the active run."""
    data = _load(manifest_uri, params)
    tag_dataset(data.manifest, manifest_uri)
    return data


def fit_summary(fit: Any) -> dict[str, float]:
    """The fit's own metrics: time, throughput, best epoch and, where a GPU trained, its utilisation."""
    summary = {FIT_TIME_S: fit.fit_time_s, TRAIN_SAMPLES_PER_S: fit.train_samples_per_s}
    if fit.epoch_time_s is not None:
        summary[EPOCH_TIME_S] = fit.epoch_time_s
    if fit.best_epoch is not None:
        summary[BEST_EPOCH] = float(fit.best_epoch)
        summary[BEST_VAL_F1] = next(h[VAL_F1] for h in fit.history if h["epoch"] == fit.best_epoch)
    if fit.gpu is not None:
        summary.update(fit.gpu.metrics())
    return summary


def run_training(
    manifest_uri: str,
    params: TrainParams | dict[str, Any] | None = None,
    *,
    register_model: bool = True,
    registered_model_name: str | None = None,
) -> TrainResult | None:
    """Fine-tune a transformer on the snapshot and register it. Raises ``TrainingError`` on failure.

    Returns None on the ranks above 0 of a distributed run: they train their share and leave the run, the
    evaluation and the registry version to rank 0.
    """
    import mlflow

    from sentiflow.train.transformer_fit import fit_transformer

    params = params if isinstance(params, TrainParams) else TrainParams.model_validate(params or {})
    if not is_main_process():
        fit_transformer(_load(manifest_uri, params), params)
        return None
    run_name = f"{FAMILY_TRANSFORMER}-{Path(params.model_name).name}"
    with training_run(FAMILY_TRANSFORMER, run_name, params.model_dump(), manifest_uri) as run:
        mlflow.set_tag(TAG_BASE_MODEL, params.model_name)
        data = _load_tagged(manifest_uri, params)
        fit = fit_transformer(data, params, on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch))
        return _finish(
            run,
            fit.classifier,
            data,
            manifest_uri,
            fit_summary(fit),
            history=fit.history,
            register_model=register_model,
            registered_model_name=registered_model_name,
        )


def check_baseline_rows(rows: int, params: BaselineParams) -> None:
    """The TF-IDF baseline holds its whole training matrix and n-gram vocabulary in memory (measured: 1.3 GiB
    at 40k IMDb reviews, about 20 KiB a row): above ``max_train_rows`` it refuses, saying what to do,
    rather than being killed for memory after hours."""
    if params.max_train_rows is not None and rows > params.max_train_rows:
        raise TrainingError(
            f"the TF-IDF baseline would train on {rows:,} rows, above its max_train_rows "
            f"({params.max_train_rows:,}): it holds every training row's n-grams in memory (about 20 KiB a "
            f"row). Set the baseline's train_subset_size to at most {params.max_train_rows:,} (a seeded "
            "sample; in the DAG: baseline_params), or raise max_train_rows on a worker with the memory."
        )


def run_baseline(
    manifest_uri: str,
    params: BaselineParams | dict[str, Any] | None = None,
    *,
    register_model: bool = True,
    registered_model_name: str | None = None,
) -> TrainResult:
    """Fit the TF-IDF + logistic regression baseline on the same splits and register it."""
    from sentiflow.modeling.tfidf import TfidfClassifier

    params = params if isinstance(params, BaselineParams) else BaselineParams.model_validate(params or {})
    with training_run(FAMILY_TFIDF, FAMILY_TFIDF, params.model_dump(), manifest_uri) as run:
        data = _load_tagged(manifest_uri, params)
        check_baseline_rows(len(data.train), params)
        classifier = TfidfClassifier.build(
            data.label_names,
            C=params.C,
            max_features=params.max_features,
            ngram_max=params.ngram_max,
            seed=params.seed,
        )
        started = time.perf_counter()
        texts = (text for chunk in text_chunks(data.train, PREDICT_CHUNK) for text in chunk)
        classifier.fit(texts, label_ids(data.train))
        summary = {FIT_TIME_S: time.perf_counter() - started}
        return _finish(
            run,
            classifier,
            data,
            manifest_uri,
            summary,
            history=None,
            register_model=register_model,
            registered_model_name=registered_model_name,
        )
