"""Selection and the promotion gate on logged values, pure: ties, missing metrics, first version,
lower-is-better, force; the policy's own checks and the decision's tags."""

from __future__ import annotations

import math

import pytest

from sentiflow import names
from sentiflow.gate.evidence import Evidence
from sentiflow.gate.judge import Decision, judge
from sentiflow.gate.policy import GatePolicy
from sentiflow.registry import Candidate, SelectionError, pick_best
from sentiflow.release.checks import CheckCase, InferenceCheckError, cases_from_csv, label_matches, run_check

F1 = names.BEST_VAL_F1
LOSS = names.VAL_LOSS


def c(version: str, **metrics: float) -> Candidate:
    return Candidate(version=version, run_id=f"run{version}", metrics=metrics)


def gate(
    candidate: Candidate,
    champion: Candidate | None,
    metric: str,
    *,
    min_improvement: float = 0.0,
    min_metric_value: float | None = None,
    force: bool = False,
) -> Decision:
    """The gate on the values the runs logged: ``judge`` with a policy and logged evidence."""
    policy = GatePolicy(
        selection_metric=metric,
        min_improvement=min_improvement,
        min_metric_value=min_metric_value,
        force_promote=force,
    )
    return judge(policy, Evidence.logged(candidate, champion, metric))


def test_pick_best_maximises_and_minimises_by_metric_direction() -> None:
    pool = [c("1", best_val_f1=0.80, val_loss=0.40), c("2", best_val_f1=0.85, val_loss=0.50)]
    assert pick_best(pool, F1).version == "2"
    assert pick_best(pool, LOSS).version == "1"


def test_pick_best_tie_goes_to_newest_version_numerically() -> None:
    pool = [c("10", best_val_f1=0.9), c("9", best_val_f1=0.9), c("2", best_val_f1=0.9)]
    assert pick_best(pool, F1).version == "10"


def test_pick_best_skips_missing_and_nan_metrics() -> None:
    pool = [c("1"), c("2", best_val_f1=math.nan), c("3", best_val_f1=0.5)]
    assert pick_best(pool, F1).version == "3"


def test_pick_best_errors_name_the_metric_and_what_was_logged() -> None:
    with pytest.raises(SelectionError, match="no model versions"):
        pick_best([], F1)
    with pytest.raises(SelectionError, match=r"'val_auc'.*val_accuracy"):
        pick_best([c("1", val_accuracy=0.9)], names.VAL_AUC)


def test_first_version_is_promoted_when_it_passes_the_floor() -> None:
    decision = gate(c("1", best_val_f1=0.7), None, F1, min_metric_value=0.6)
    assert decision.promote and "first champion" in decision.reason
    blocked = gate(c("1", best_val_f1=0.5), None, F1, min_metric_value=0.6)
    assert not blocked.promote and "at least 0.6000" in blocked.reason


def test_gate_requires_strict_improvement_by_min_improvement() -> None:
    champion = c("1", best_val_f1=0.80)
    assert not gate(c("2", best_val_f1=0.80), champion, F1).promote  # a tie keeps the champion
    assert gate(c("2", best_val_f1=0.81), champion, F1).promote
    small = gate(c("2", best_val_f1=0.805), champion, F1, min_improvement=0.01)
    assert not small.promote and "below the required 0.0100" in small.reason
    assert small.champion_value == pytest.approx(0.80)
    assert gate(c("2", best_val_f1=0.82), champion, F1, min_improvement=0.01).promote
    worse = gate(c("2", best_val_f1=0.70), champion, F1)
    assert not worse.promote and "champion kept" in worse.reason


def test_gate_lower_is_better_metrics_flip_comparison_and_floor() -> None:
    champion = c("1", val_loss=0.40)
    assert gate(c("2", val_loss=0.30), champion, LOSS, min_improvement=0.05).promote
    assert not gate(c("2", val_loss=0.45), champion, LOSS).promote
    ceiling = gate(c("2", val_loss=0.30), None, LOSS, min_metric_value=0.25)
    assert not ceiling.promote and "at most" in ceiling.reason


def test_gate_champion_without_the_metric_is_kept_with_a_reason() -> None:
    decision = gate(c("2", val_auc=0.9), c("1", best_val_f1=0.8), names.VAL_AUC)
    assert not decision.promote and "has no 'val_auc'" in decision.reason


def test_gate_candidate_already_champion_and_bad_arguments() -> None:
    same = c("3", best_val_f1=0.9)
    assert not gate(same, same, F1).promote
    assert not gate(c("2"), None, F1).promote  # candidate never logged the metric
    with pytest.raises(ValueError, match="min_improvement"):
        gate(same, None, F1, min_improvement=-0.1)
    assert gate(same, None, F1).model_dump()["candidate_version"] == "3"


def test_gate_force_skips_the_comparison_but_not_the_floor() -> None:
    champion = c("1", best_val_f1=0.90)
    forced = gate(c("2", best_val_f1=0.70), champion, F1, force=True)
    assert forced.promote and "forced" in forced.reason and forced.champion_value == pytest.approx(0.90)
    assert gate(c("2", val_auc=0.7), c("1", best_val_f1=0.8), names.VAL_AUC, force=True).promote
    floored = gate(c("2", best_val_f1=0.70), champion, F1, force=True, min_metric_value=0.75)
    assert not floored.promote and "at least 0.7500" in floored.reason
    same = c("3", best_val_f1=0.9)
    assert not gate(same, same, F1, force=True).promote  # already the champion: nothing to do


def test_the_policy_refuses_what_the_form_refuses() -> None:
    for bad in ({"min_improvement": math.inf}, {"confidence": 1.0}, {"selection_metric": "  "}, {"x": 1}):
        with pytest.raises(ValueError):
            GatePolicy.model_validate(bad)
    assert GatePolicy(selection_metric=LOSS).direction == "lower" and GatePolicy().direction == "higher"


def test_decision_fields_are_the_gate_tags() -> None:
    decision = gate(c("2", best_val_f1=0.81), c("1", best_val_f1=0.80), F1)
    tags = decision.tags()
    assert set(tags) <= {names.TAG_GATE_PREFIX + f for f in Decision.model_fields}
    assert tags["gate.promote"] == "True" and tags["gate.comparable"] == "True"
    assert tags["gate.candidate_value"] == "0.81" and tags["gate.comparison_method"] == "logged metrics"
    assert "gate.difference" not in tags  # no value, no tag


# --- the inference check's scoring (pure; the live server part is in test_pipeline_e2e.py) ----------------
def test_label_matching_accepts_names_ids_and_prefixes() -> None:
    assert label_matches("positive", "positive", 1)
    assert label_matches("1", "positive", 1)
    assert label_matches("pos", "positive", 1)
    assert label_matches("POSITIVE", "pos", 1)
    assert not label_matches("negative", "positive", 1)
    assert not label_matches("0", "positive", 1)
    three = ["negative", "neutral", "positive"]
    assert label_matches("neg", "negative", 0, three) and not label_matches("neg", "neutral", 1, three)
    assert not label_matches("negative", "neutral", 1, three)
    with pytest.raises(InferenceCheckError, match=r"'ne' could mean any of \['negative', 'neutral'\]"):
        label_matches("ne", "neutral", 1, three)


def test_run_check_scores_and_validates_the_server_answer() -> None:
    cases = [CheckCase("good", "positive"), CheckCase("bad", "negative")]

    def predict(texts: list[str]) -> dict:
        return {
            "model_version": "4",
            "predictions": [{"label": "positive", "label_id": 1, "scores": {"positive": 0.9}} for _ in texts],
        }

    report = run_check(predict, cases, 0.75)
    assert report.accuracy == 0.5 and not report.passed and report.version == "4"
    assert report.summary()["correct"] == 1
    assert b"expected,predicted" in report.csv_bytes()
    with pytest.raises(InferenceCheckError, match="answered 0 predictions for 2"):
        run_check(lambda texts: {"predictions": []}, cases, 0.5)
    with pytest.raises(InferenceCheckError, match="within"):
        run_check(predict, cases, 1.5)


def test_check_csv_errors_name_the_missing_column() -> None:
    assert cases_from_csv(b"text,label\nnice,positive\n", "x.csv")[0].expected == "positive"
    with pytest.raises(InferenceCheckError, match=r"x.csv lacks column\(s\) \['label'\]"):
        cases_from_csv(b"text,sentiment\nnice,positive\n", "x.csv")


def test_unknown_params_names_keys_the_dag_does_not_declare():
    from sentiflow.orchestration.dag_params import unknown_params

    declared = {"learning_rate": 1, "num_train_epochs": 2}
    assert unknown_params({"learnin_rate": 1e-4, "num_train_epochs": 1}, declared) == ["learnin_rate"]
    assert unknown_params({}, declared) == [] and unknown_params(None, declared) == []
