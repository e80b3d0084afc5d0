"""Champion against challenger on the same rows: the metric on rows and a paired confidence interval.

Logged metrics describe whatever rows each run was evaluated on; after a dataset change the champion's
``best_val_f1`` and a challenger's are about different data (or different label sets) and comparing them
means nothing. Here both models predict this run's validation rows through their pyfunc, the metric is
computed by the training code (``classification_metrics``), and the difference challenger − champion gets
a paired interval: an exact-McNemar-backed Wald interval for accuracy (closed form, hand-checkable) and a
percentile bootstrap over rows (``scipy.stats.bootstrap``) for every other metric.

Pure functions over arrays, unit-tested against hand-computed values; ``evidence`` builds on them, the
MLflow/S3 side (the rows, the models' predictions) is ``scoring``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sentiflow.names import BEST_VAL_F1, SPLIT_METRIC_SUFFIXES, split_metric

#: Resamples of the bootstrap: more barely move the interval's bounds and only slow the gate down.
BOOTSTRAP_RESAMPLES = 1000
#: AUC has no closed form per resample (sklearn per call): fewer resamples keep the gate within seconds.
AUC_RESAMPLES = 200
#: Metrics computed from the confusion matrix, so a resample costs one ``bincount``.
CONFUSION_SUFFIXES = ("accuracy", "f1", "f1_weighted", "precision", "recall")


class ComparisonError(ValueError):
    """The two models cannot be compared on these rows (shapes, labels); the message says why."""


def row_metric(metric: str) -> str | None:
    """The per-row computable validation metric behind a selection metric, or None (times, train_loss).

    ``best_val_f1`` is the validation F1 of the registered (best-epoch) model, i.e. ``val_f1`` on the rows.
    ``test_*`` selection metrics are computed on the validation rows too: selection never looks at test.
    """
    if metric == BEST_VAL_F1:
        return split_metric("val", "f1")
    for split in ("val", "test"):
        prefix = f"{split}_"
        if metric.startswith(prefix) and metric[len(prefix) :] in SPLIT_METRIC_SUFFIXES:
            return split_metric("val", metric[len(prefix) :])
    return None


def metric_value(labels: np.ndarray, probs: np.ndarray, metric: str) -> float | None:
    """``metric`` (a ``val_*`` name) by the training code; None when undefined here (AUC, one class)."""
    from sentiflow.train.metrics import classification_metrics

    return classification_metrics("val", labels, probs).get(metric)


# --- fast per-resample metrics ----------------------------------------------------------------------
def _confusion_metric(suffix: str, labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """``suffix`` for each row of ``labels``/``predicted`` (shape ``(B, n)``), as sklearn computes it.

    Macro averages run over the classes present in the labels or the predictions of that resample, with
    0 for an undefined precision/recall/F1 (sklearn's ``zero_division=0``), so the values equal
    ``classification_metrics``' on the same rows (a test checks it).
    """
    b, n = labels.shape
    codes = (np.arange(b)[:, None] * k + labels) * k + predicted
    cm = np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k).astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)  # true counts per class
    predicted_n = cm.sum(axis=1)
    if suffix == "accuracy":
        return tp.sum(axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_n > 0, tp / predicted_n, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support + predicted_n) > 0
    if suffix == "f1_weighted":
        return (f1 * support).sum(axis=1) / support.sum(axis=1)
    per_class = {"f1": f1, "precision": precision, "recall": recall}[suffix]
    return (per_class * present).sum(axis=1) / present.sum(axis=1)


def _resampled_metric(suffix: str, labels: np.ndarray, probs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    if suffix in CONFUSION_SUFFIXES:
        return _confusion_metric(suffix, labels[idx], probs.argmax(axis=1)[idx], k)
    if suffix == "loss":
        clipped = np.clip(probs, 1e-7, 1.0)
        clipped = clipped / clipped.sum(axis=1, keepdims=True)
        row_loss = -np.log(clipped[np.arange(len(labels)), labels])
        return row_loss[idx].mean(axis=1)
    from sklearn.metrics import roc_auc_score

    out = np.full(idx.shape[0], np.nan)
    for i, rows in enumerate(idx):  # AUC: no closed form per resample; sklearn's, as in training
        y, p = labels[rows], probs[rows]
        if len(np.unique(y)) < k:
            continue  # undefined on this resample, as ``classification_metrics`` leaves it out
        if k == 2:
            out[i] = roc_auc_score(y, p[:, 1])
        else:
            out[i] = roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k)))
    return out


# --- intervals ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """challenger − champion with a two-sided interval at ``confidence``; ``method`` names how."""

    difference: float
    low: float
    high: float
    confidence: float
    method: str
    p_value: float | None = None


def accuracy_interval(
    labels: np.ndarray, challenger_pred: np.ndarray, champion_pred: np.ndarray, confidence: float
) -> Interval:
    """Paired difference of accuracies: Wald interval on the discordant pairs, exact McNemar p-value.

    With n10 rows only the challenger gets right and n01 only the champion gets right, out of n:
    difference = (n10 − n01) / n, standard error = sqrt(n10 + n01 − (n10 − n01)² / n) / n.
    """
    from scipy.stats import binomtest, norm

    labels = np.asarray(labels)
    a = np.asarray(challenger_pred) == labels
    b = np.asarray(champion_pred) == labels
    n = len(labels)
    n10 = int(np.sum(a & ~b))
    n01 = int(np.sum(~a & b))
    diff = (n10 - n01) / n
    se = math.sqrt(max(n10 + n01 - (n10 - n01) ** 2 / n, 0.0)) / n
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = float(binomtest(n10, n10 + n01, 0.5).pvalue) if n10 + n01 else 1.0
    return Interval(diff, diff - z * se, diff + z * se, confidence, "mcnemar", p)


def bootstrap_interval(
    labels: np.ndarray,
    challenger_probs: np.ndarray,
    champion_probs: np.ndarray,
    metric: str,
    confidence: float,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Paired percentile bootstrap over rows of ``metric`` (a ``val_*`` name): both models, same resample."""
    from scipy.stats import bootstrap

    labels = np.asarray(labels).astype(int)
    suffix = metric[len("val_") :]
    challenger_probs = np.asarray(challenger_probs, dtype=np.float64)
    champion_probs = np.asarray(champion_probs, dtype=np.float64)

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.atleast_2d(np.asarray(idx, dtype=np.int64))
        return _resampled_metric(suffix, labels, challenger_probs, idx) - _resampled_metric(
            suffix, labels, champion_probs, idx
        )

    challenger_value = metric_value(labels, challenger_probs, metric)
    champion_value = metric_value(labels, champion_probs, metric)
    if challenger_value is None or champion_value is None:
        raise ComparisonError(f"{metric} is undefined on these rows (e.g. AUC with a class missing)")
    result = bootstrap(
        (np.arange(len(labels)),),
        statistic,
        n_resamples=min(n_resamples, AUC_RESAMPLES) if suffix == "auc" else n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=200,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    diff = challenger_value - champion_value
    if not (math.isfinite(low) and math.isfinite(high)):  # every resample equal: scipy says NaN
        low = high = diff
    return Interval(diff, float(low), float(high), confidence, "paired bootstrap")


def difference_interval(
    labels: np.ndarray,
    challenger_probs: np.ndarray,
    champion_probs: np.ndarray,
    metric: str,
    confidence: float,
    *,
    seed: int = 0,
) -> Interval:
    """McNemar for accuracy, the paired bootstrap for everything else."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if metric == split_metric("val", "accuracy"):
        return accuracy_interval(
            labels,
            np.asarray(challenger_probs).argmax(axis=1),
            np.asarray(champion_probs).argmax(axis=1),
            confidence,
        )
    return bootstrap_interval(labels, challenger_probs, champion_probs, metric, confidence, seed=seed)
