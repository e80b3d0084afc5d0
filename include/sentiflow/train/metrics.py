"""The classification metrics every family reports, named by ``sentiflow.names`` (``val_*``, ``test_*``)."""

from __future__ import annotations

import math

import numpy as np

from sentiflow.names import split_metric


def classification_metrics(
    split: str, labels: np.ndarray, probs: np.ndarray, *, loss: float | None = None
) -> dict[str, float]:
    """Accuracy, macro/weighted F1, macro precision/recall, ROC AUC and cross-entropy loss.

    AUC is binary ROC AUC on the positive class, or one-vs-rest macro for more classes; it is NaN-free:
    a split holding a single class gets no AUC (MLflow would store NaN and selection would choke on it).
    ``loss`` defaults to the mean cross-entropy of ``probs``, so families without a loss of their own
    (the baseline) are comparable.
    """
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    classes = list(range(probs.shape[1]))
    predicted = probs.argmax(axis=1)
    if loss is None:
        # clipped (a confident model's 0.0 would be an infinite loss) and renormalised, so rows still sum to 1
        clipped = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1.0)
        loss = float(log_loss(labels, clipped / clipped.sum(axis=1, keepdims=True), labels=classes))
    metrics = {
        split_metric(split, "loss"): float(loss),
        split_metric(split, "accuracy"): float(accuracy_score(labels, predicted)),
        split_metric(split, "f1"): float(f1_score(labels, predicted, average="macro", zero_division=0)),
        split_metric(split, "f1_weighted"): float(
            f1_score(labels, predicted, average="weighted", zero_division=0)
        ),
        split_metric(split, "precision"): float(
            precision_score(labels, predicted, average="macro", zero_division=0)
        ),
        split_metric(split, "recall"): float(
            recall_score(labels, predicted, average="macro", zero_division=0)
        ),
    }
    if len(np.unique(labels)) == len(classes):
        if len(classes) == 2:
            auc = roc_auc_score(labels, probs[:, 1])
        else:
            auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=classes)
        metrics[split_metric(split, "auc")] = float(auc)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}
