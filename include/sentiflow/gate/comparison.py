"""Champion against challenger on the same rows: scores, a paired confidence interval, and the decision.

Logged metrics describe whatever rows each run was evaluated on; after a dataset change the champion's
``best_val_f1`` and a challenger's are about different data (or different label sets) and comparing them
means nothing. Here both models predict this run's validation rows through their pyfunc, the metric is
computed by the training code (``classification_metrics``), and the difference challenger − champion gets
a paired interval: an exact-McNemar-backed Wald interval for accuracy (closed form, hand-checkable) and a
percentile bootstrap over rows (``scipy.stats.bootstrap``) for every other metric.

Pure functions over arrays, except ``score_model`` (MLflow) and ``validation_rows`` (S3), so every rule is
unit-tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sentiflow.gate.selection import lower_is_better
from sentiflow.names import BEST_VAL_F1, SPLIT_METRIC_SUFFIXES, split_metric

#: Resamples of the bootstrap; 1,000 keeps a 500-row F1 interval within ~0.005 of a 10,000 one, in < 1 s.
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


# --- the decision ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowDecision:
    """What the gate decided on the shared rows, with everything the XCom, run tags and web page show."""

    promote: bool
    reason: str
    metric: str
    candidate_value: float | None
    champion_value: float | None
    comparable: bool
    champion_scored_on: str | None = None
    difference: float | None = None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    confidence: float | None = None
    comparison_method: str | None = None
    p_value: float | None = None
    rows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def decide_on_rows(
    *,
    candidate_version: str,
    champion_version: str,
    metric: str,
    labels: np.ndarray,
    candidate_probs: np.ndarray,
    champion_probs: np.ndarray,
    scored_on: str,
    confidence: float,
    min_improvement: float = 0.0,
    min_metric_value: float | None = None,
    force: bool = False,
    seed: int = 0,
) -> RowDecision:
    """Promote when the interval's bound clears ``min_improvement`` (``confidence`` 0: the point value).

    ``metric`` is the selection metric; its ``row_metric`` is computed for both models. For a
    lower-is-better metric (``val_loss``) the upper bound must be below −``min_improvement``.
    """
    computed = row_metric(metric)
    if computed is None:
        raise ComparisonError(f"{metric!r} cannot be computed from predictions on rows")
    labels = np.asarray(labels).astype(int)
    cand = metric_value(labels, candidate_probs, computed)
    champ = metric_value(labels, champion_probs, computed)
    base = dict(
        metric=computed, champion_scored_on=scored_on, comparable=True, rows=len(labels), confidence=None
    )
    if cand is None or champ is None:
        raise ComparisonError(f"{computed} is undefined on the {len(labels)} validation rows")
    where = f"on the same {len(labels)} validation rows ({scored_on})"
    head = (
        f"version {candidate_version} has {computed}={cand:.4f} vs champion version {champion_version} "
        f"{champ:.4f} {where}"
    )
    if min_metric_value is not None:
        too_low = cand > min_metric_value if lower_is_better(computed) else cand < min_metric_value
        if too_low:
            bound = "at most" if lower_is_better(computed) else "at least"
            return RowDecision(
                False,
                f"{head}; the gate requires {bound} {min_metric_value:.4f}; champion kept",
                candidate_value=cand,
                champion_value=champ,
                difference=cand - champ,
                **base,
            )
    sign = -1.0 if lower_is_better(computed) else 1.0
    gain = sign * (cand - champ)
    interval: Interval | None = None
    if confidence > 0:
        interval = difference_interval(
            labels, candidate_probs, champion_probs, computed, confidence, seed=seed
        )
    values: dict[str, Any] = dict(candidate_value=cand, champion_value=champ, difference=cand - champ)
    if interval is not None:
        values.update(
            difference_ci_low=interval.low,
            difference_ci_high=interval.high,
            confidence=confidence,
            comparison_method=interval.method,
            p_value=interval.p_value,
        )
    base.pop("confidence")
    if force:
        return RowDecision(
            True, f"{head}: promotion forced (force_promote), the comparison did not decide", **values, **base
        )
    direction = "lower" if sign < 0 else "higher"
    if interval is None:
        ok = gain > 0 and gain >= min_improvement
        verdict = (
            f"improvement {gain:+.4f} {'>=' if ok else 'is below'} the required {min_improvement:.4f}"
            f"{'' if ok else ' (and must be > 0); champion kept'} (confidence 0: no interval)"
        )
        return RowDecision(ok, f"{head} ({direction} is better): {verdict}", **values, **base)
    # the bound on the side of "better": the worst case the data allow for the challenger
    worst = interval.low if sign > 0 else -interval.high
    ci = (
        f"{confidence:.0%} interval of the difference [{interval.low:+.4f}, {interval.high:+.4f}] "
        f"({interval.method})"
    )
    ok = worst > min_improvement
    if ok:
        verdict = f"{ci} clears the required improvement {min_improvement:.4f}: promoted"
    else:
        verdict = (
            f"{ci} does not clear the required improvement {min_improvement:.4f}: the difference "
            "may be chance; champion kept"
        )
    return RowDecision(ok, f"{head} ({direction} is better): {verdict}", **values, **base)


def not_comparable(
    *,
    candidate_version: str,
    candidate_labels: Sequence[str],
    champion_version: str,
    champion_labels: Sequence[str],
    metric: str,
    force: bool,
    scored_on: str | None,
) -> RowDecision:
    """Different label sets: no number compares the two; only ``force_promote`` replaces the champion."""
    what = (
        f"champion version {champion_version} predicts {list(champion_labels)} but version "
        f"{candidate_version} predicts {list(candidate_labels)}: different label sets, the two models "
        "are not comparable"
    )
    if force:
        reason = f"{what}; promotion forced (force_promote)"
    else:
        reason = (
            f"{what}; champion kept. Promote it with force_promote, or train this dataset into another "
            "registered model (registered_model_name)"
        )
    return RowDecision(
        force, reason, metric=metric, candidate_value=None, champion_value=None, comparable=False,
        champion_scored_on=scored_on,
    )  # fmt: skip


# --- I/O: the rows and the models' predictions on them ----------------------------------------------
def validation_rows(
    store: Any, manifest_uri: str, *, eval_subset_size: int | None = None, seed: int = 42
) -> tuple[list[str], np.ndarray, list[str]]:
    """This run's validation texts and label ids (subset as training subsets them) and the label names."""
    from sentiflow.data.snapshot import read_manifest, read_split
    from sentiflow.names import LABEL_COLUMN, TEXT_COLUMN
    from sentiflow.train.data import subset

    manifest = read_manifest(store, manifest_uri)
    frame = subset(read_split(store, manifest, "validation"), eval_subset_size, seed)
    return (
        frame[TEXT_COLUMN].astype(str).tolist(),
        frame[LABEL_COLUMN].to_numpy().astype(int),
        list(manifest.label_names),
    )


@dataclass(frozen=True)
class ScoredModel:
    label_names: list[str]
    probs: np.ndarray


def score_model(model_uri: str, texts: list[str]) -> ScoredModel:
    """Probabilities per label (the model's own label order) through the logged pyfunc's ``predict``."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    label_names = list(model.unwrap_python_model().classifier.label_names)
    frame = model.predict(texts)
    probs = frame[[f"score_{name}" for name in label_names]].to_numpy(dtype=np.float64)
    return ScoredModel(label_names, probs)
