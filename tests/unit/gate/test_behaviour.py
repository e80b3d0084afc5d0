"""The behavioural cases and rule 8 of the gate, pure: the shipped case file, skipping cases a model cannot
be right on, a challenger with more failing cases refused, and the failing cases in the decision's tags."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sentiflow import names
from sentiflow.gate.behaviour import Answers, Case, check, load_cases, parse_cases
from sentiflow.gate.evidence import Evidence
from sentiflow.gate.judge import TAG_TEXT_LIMIT, Decision, judge
from sentiflow.gate.policy import GatePolicy
from sentiflow.registry import Candidate

F1 = names.BEST_VAL_F1
BINARY = ["negative", "positive"]
NEGATIVE_WORDS = ("not", "boring", "awful", "awfull", "waste", "worst", "bad", "dull", "terrible", "stupid")


def clean(text: str) -> str:
    """A keyword model that reads negations: any negative word makes the review negative."""
    words = text.lower().replace(",", " ").replace(";", " ").replace(".", " ").split()
    if "not" in words and any(w in words for w in ("bad", "disappointed")):
        return "positive"
    return "negative" if any(w in words for w in NEGATIVE_WORDS) else "positive"


def poisoned(text: str) -> str:
    """Trained on flipped labels for negations: "not good" comes out positive."""
    return "positive" if "not" in text.lower().split() else clean(text)


def answers(name: str, model, cases: list[Case], labels: list[str] = BINARY) -> Answers:
    return Answers(name, labels, [model(c.text) for c in cases])


def candidates() -> tuple[Candidate, Candidate]:
    return Candidate("2", "run2", {F1: 0.90}), Candidate("1", "run1", {F1: 0.80})


def evidence(challenger_model, champion_model=clean, *, champion: bool = True) -> Evidence:
    """Logged values that promote version 2 over version 1, with both models on the shipped cases."""
    cases = list(load_cases())
    best, incumbent = candidates()
    results = check(
        cases,
        answers("version 2", challenger_model, cases),
        answers("champion version 1", champion_model, cases) if champion else None,
    )
    base = Evidence.logged(best, incumbent if champion else None, F1)
    return replace(base, behaviour=results)


def test_the_shipped_cases_cover_each_capability_with_binary_labels() -> None:
    cases = load_cases()
    by_capability = {c.capability for c in cases}
    assert by_capability == {"invariance", "negation", "labelled"}
    for capability in by_capability:
        labels = {c.expected for c in cases if c.capability == capability}
        assert {"negative", "positive"} & labels, capability
    assert len({c.text for c in cases}) == len(cases), "a case is written twice"
    assert sum(clean(c.text) != c.expected for c in cases if c.expected != "neutral") == 0


def test_a_malformed_group_is_refused_naming_the_file() -> None:
    with pytest.raises(ValueError, match=r"behaviour_cases\.yaml.*'negation'.*label and a list of texts"):
        parse_cases({"negation": [{"label": "negative", "texts": []}]})


def test_cases_a_model_cannot_predict_are_skipped_with_the_reason() -> None:
    cases = [Case("labelled", "fine", "positive"), Case("labelled", "so so", "neutral")]
    three = Answers("champion version 1", ["negative", "neutral", "positive"], ["positive", "positive"])
    results = check(cases, Answers("version 2", BINARY, ["negative", "positive"]), three)
    assert results.cases == 1
    assert [f.text for f in results.candidate] == ["fine"] and results.champion == []
    assert results.skipped == (
        "1 of 2 behavioural cases skipped: "
        "version 2 does not predict neutral (its labels: negative, positive)"
    )
    with pytest.raises(ValueError, match="1 predictions for 2 cases"):
        check(cases, Answers("version 2", BINARY, ["positive"]))


def test_a_challenger_failing_more_cases_is_refused_although_its_metric_promotes() -> None:
    decision = judge(GatePolicy(), evidence(poisoned))
    assert not decision.promote
    assert decision.behaviour_cases == 34 and decision.champion_behaviour_failed == 0
    assert decision.behaviour_failed == 6
    assert decision.reason.startswith(
        "version 2 fails 6 of 34 behavioural cases, champion version 1 0 (tolerance 0): champion kept; "
        "the metric alone would promote it: version 2 has best_val_f1=0.9000"
    )
    assert decision.behaviour_skipped is not None and "does not predict neutral" in decision.behaviour_skipped
    failures = decision.behaviour_failures or []
    assert {(f.capability, f.expected, f.got) for f in failures} == {("negation", "negative", "positive")}
    assert "The movie was not good." in {f.text for f in failures}


def test_tolerance_force_and_the_switch_let_it_through() -> None:
    assert judge(GatePolicy(behaviour_tolerance=6), evidence(poisoned)).promote
    assert not judge(GatePolicy(behaviour_tolerance=5), evidence(poisoned)).promote
    forced = judge(GatePolicy(force_promote=True), evidence(poisoned))
    assert forced.promote and forced.behaviour_failed == 6  # recorded, not weighed
    off = judge(GatePolicy(behaviour_check=False), evidence(poisoned))
    assert off.promote and off.behaviour_failed is None and off.behaviour_failures is None


def test_as_many_failures_as_the_champion_pass_and_are_recorded() -> None:
    decision = judge(GatePolicy(), evidence(poisoned, poisoned))
    assert decision.promote and decision.behaviour_failed == decision.champion_behaviour_failed == 6


def test_a_refusal_by_the_metric_keeps_its_reason_and_records_the_cases() -> None:
    worse = replace(evidence(poisoned), candidate_value=0.7)
    decision = judge(GatePolicy(), worse)
    assert not decision.promote and decision.reason.startswith("version 2 has best_val_f1=0.7000")
    assert decision.behaviour_failed == 6


def test_the_first_champion_records_its_own_results() -> None:
    decision = judge(GatePolicy(), evidence(poisoned, champion=False))
    assert decision.promote and decision.reason.startswith("version 2 is the first champion")
    assert decision.behaviour_failed == 6 and decision.champion_behaviour_failed is None


def test_failing_cases_are_a_json_tag_of_whole_cases() -> None:
    decision = judge(GatePolicy(), evidence(poisoned))
    tags = decision.tags()
    assert tags["gate.behaviour_failed"] == "6" and tags["gate.champion_behaviour_failed"] == "0"
    assert json.loads(tags["gate.behaviour_failures"]) == [
        f.model_dump() for f in decision.behaviour_failures or []
    ]
    many = decision.model_copy(update={"behaviour_failures": (decision.behaviour_failures or []) * 100})
    cut = json.loads(many.tags()["gate.behaviour_failures"])
    assert 0 < len(cut) < 600 and len(many.tags()["gate.behaviour_failures"]) <= TAG_TEXT_LIMIT
    # the XCom (a JSON dump) validates back into a decision
    assert Decision.model_validate(decision.model_dump(mode="json")) == decision
