"""Champion vs challenger on the same rows: the paired intervals, the fast metrics, the decision rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sentiflow.gate.comparison import (
    ComparisonError,
    _resampled_metric,
    accuracy_interval,
    bootstrap_interval,
    difference_interval,
    row_metric,
)
from sentiflow.gate.evidence import Evidence
from sentiflow.gate.judge import Decision, judge
from sentiflow.gate.policy import GatePolicy
from sentiflow.gate.scoring import ScoredModel, aligned
from sentiflow.registry import Candidate
from sentiflow.train.metrics import classification_metrics


def one_hot(predicted: list[int] | np.ndarray, k: int = 2) -> np.ndarray:
    """Probabilities that put 0.9 on the predicted class (argmax = prediction)."""
    predicted = np.asarray(predicted)
    probs = np.full((len(predicted), k), 0.1 / (k - 1))
    probs[np.arange(len(predicted)), predicted] = 0.9
    return probs


def hand_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """100 rows: both right on 70, only the challenger on 15, only the champion on 5, both wrong on 10."""
    labels = np.zeros(100, dtype=int)
    challenger = np.array([0] * 70 + [0] * 15 + [1] * 5 + [1] * 10)
    champion = np.array([0] * 70 + [1] * 15 + [0] * 5 + [1] * 10)
    return labels, challenger, champion


def test_accuracy_interval_matches_the_hand_computed_mcnemar_wald_interval() -> None:
    labels, challenger, champion = hand_case()
    interval = accuracy_interval(labels, challenger, champion, 0.95)
    # d = (15 - 5) / 100 = 0.10; se = sqrt(15 + 5 - 10**2 / 100) / 100 = sqrt(19) / 100
    se = math.sqrt(19) / 100
    assert interval.difference == pytest.approx(0.10)
    assert interval.low == pytest.approx(0.10 - 1.959964 * se, abs=1e-6)  # 0.014567
    assert interval.high == pytest.approx(0.10 + 1.959964 * se, abs=1e-6)  # 0.185433
    # exact McNemar: P(X <= 5 or X >= 15 | X ~ Bin(20, 0.5)) = 2 * 0.020695 = 0.041389
    assert interval.p_value == pytest.approx(0.041389, abs=1e-5)
    assert interval.method == "mcnemar"
    wider = accuracy_interval(labels, challenger, champion, 0.99)
    assert wider.low < interval.low and wider.high > interval.high


def test_accuracy_goes_through_mcnemar_and_agrees_with_the_bootstrap() -> None:
    labels, challenger, champion = hand_case()
    via = difference_interval(labels, one_hot(challenger), one_hot(champion), "val_accuracy", 0.95)
    assert via.method == "mcnemar" and via.difference == pytest.approx(0.10)
    boot = bootstrap_interval(labels, one_hot(challenger), one_hot(champion), "val_accuracy", 0.95)
    assert boot.method == "paired bootstrap" and boot.difference == pytest.approx(0.10)
    assert boot.low == pytest.approx(via.low, abs=0.03) and boot.high == pytest.approx(via.high, abs=0.03)


def test_bootstrap_degenerate_cases_are_exact() -> None:
    labels = np.array([0, 1] * 20)
    right, wrong = one_hot(labels), one_hot(1 - labels)
    always_better = bootstrap_interval(labels, right, wrong, "val_f1", 0.95)
    assert (always_better.difference, always_better.low, always_better.high) == (1.0, 1.0, 1.0)
    same = bootstrap_interval(labels, right, right, "val_f1", 0.95)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("suffix", ["accuracy", "f1", "f1_weighted", "precision", "recall", "loss"])
def test_fast_resampled_metrics_equal_the_training_metric_code(suffix: str) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 120)
    probs = rng.dirichlet(np.ones(3), 120)
    idx = rng.integers(0, 120, (6, 120))
    fast = _resampled_metric(suffix, labels, probs, idx)
    slow = [classification_metrics("val", labels[i], probs[i])[f"val_{suffix}"] for i in idx]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_row_metric_maps_selection_metrics_to_what_rows_can_give() -> None:
    assert row_metric("best_val_f1") == "val_f1"
    assert row_metric("val_accuracy") == "val_accuracy"
    assert row_metric("test_auc") == "val_auc"  # selection never looks at test rows
    assert row_metric("fit_time_s") is None and row_metric("train_loss") is None


def _decide(
    challenger, champion, labels, *, metric="val_accuracy", confidence=0.95, force=False, **policy
) -> Decision:
    """``judge`` on rows: version 7 (challenger) against champion version 3, scored on the same rows."""
    evidence = Evidence.on_rows(
        Candidate("7", "run7"), Candidate("3", "run3"), metric, labels=labels,
        candidate_probs=one_hot(challenger), champion_probs=one_hot(champion), scored_on="s3://b/m.json",
    )  # fmt: skip
    gate = GatePolicy(selection_metric=metric, confidence=confidence, force_promote=force, **policy)
    return judge(gate, evidence)


def test_promotes_only_when_the_lower_bound_clears_min_improvement() -> None:
    labels, challenger, champion = hand_case()
    promoted = _decide(challenger, champion, labels)
    assert promoted.promote and promoted.champion_scored_on == "s3://b/m.json"
    assert promoted.candidate_value == pytest.approx(0.85) and promoted.champion_value == pytest.approx(0.75)
    assert promoted.difference == pytest.approx(0.10) and promoted.difference_ci_low > 0
    assert "same 100 validation rows" in promoted.reason and "promoted" in promoted.reason
    # the same point gain, but 0.05 must be cleared by the lower bound (0.0146): kept
    kept = _decide(challenger, champion, labels, min_improvement=0.05)
    assert not kept.promote and "may be chance" in kept.reason
    # confidence 0: the point value decides (0.10 >= 0.05)
    point = _decide(challenger, champion, labels, min_improvement=0.05, confidence=0.0)
    assert point.promote and point.difference_ci_low is None


def test_a_small_gain_on_few_rows_is_not_promoted_but_force_is() -> None:
    labels = np.zeros(20, dtype=int)
    challenger = np.array([0] * 12 + [1] * 8)  # 12/20 right
    champion = np.array([0] * 11 + [1] * 9)  # 11/20 right
    kept = _decide(challenger, champion, labels)
    assert not kept.promote and kept.difference == pytest.approx(0.05) and kept.difference_ci_low < 0
    forced = _decide(challenger, champion, labels, force=True)
    assert forced.promote and "forced" in forced.reason


def test_min_metric_value_and_lower_is_better_metrics() -> None:
    labels, challenger, champion = hand_case()
    floor = _decide(challenger, champion, labels, min_metric_value=0.9)
    assert not floor.promote and "at least 0.9000" in floor.reason
    # val_loss: the challenger's lower loss is better; the interval's upper bound must be below 0
    loss = _decide(challenger, champion, labels, metric="val_loss")
    assert loss.metric == "val_loss" and loss.difference < 0 and loss.difference_ci_high < 0 and loss.promote


def _labels(force: bool = False, floor: float | None = None, rows: list[str] | None = None) -> Decision:
    evidence = Evidence.labels_differ(
        Candidate("9", "run9", {"best_val_f1": 0.7}), Candidate("2", "run2"), "best_val_f1",
        candidate_labels=["negative", "neutral", "positive"], champion_labels=["negative", "positive"],
        row_labels=rows, scored_on="s3://x",
    )  # fmt: skip
    return judge(GatePolicy(force_promote=force, min_metric_value=floor), evidence)


def test_different_label_sets_are_not_comparable() -> None:
    kept = _labels()
    assert not kept.promote and not kept.comparable
    assert "not comparable" in kept.reason and "registered_model_name" in kept.reason
    assert "force_promote" in kept.reason
    assert kept.champion_scored_on == "s3://x" and kept.candidate_value is None


def test_force_promotes_models_that_are_not_comparable_but_not_below_the_floor() -> None:
    forced = _labels(force=True)
    assert forced.promote and not forced.comparable and "promotion forced" in forced.reason
    floored = _labels(force=True, floor=0.75)
    assert not floored.promote and "at least 0.7500" in floored.reason and "not comparable" in floored.reason


def test_rows_labelled_otherwise_than_both_models_say_so() -> None:
    evidence = Evidence.labels_differ(
        Candidate("9", "run9"), Candidate("2", "run2"), "best_val_f1", candidate_labels=["neg", "pos"],
        champion_labels=["pos", "neg"], row_labels=["bad", "good"], scored_on="s3://x",
    )  # fmt: skip
    kept = judge(GatePolicy(), evidence)
    assert not kept.promote and "the rows of s3://x are labelled ['bad', 'good']" in kept.reason


def test_metrics_rows_cannot_give_are_refused_as_evidence_on_rows() -> None:
    labels, challenger, champion = hand_case()
    with pytest.raises(ComparisonError, match="fit_time_s"):
        _decide(challenger, champion, labels, metric="fit_time_s")


def test_aligned_reorders_columns_to_the_data_and_refuses_other_label_sets() -> None:
    scored = ScoredModel(["positive", "negative"], np.array([[0.8, 0.2], [0.3, 0.7]]))
    np.testing.assert_allclose(aligned(scored, ["negative", "positive"]), [[0.2, 0.8], [0.7, 0.3]])
    assert aligned(scored, ["negative", "neutral", "positive"]) is None
