"""The gate's one rule set: ``judge(policy, evidence) -> Decision``, pure.

The rules, in order (``tests/unit/gate/test_selection.py`` and ``tests/unit/gate/test_comparison.py`` hold
each one):

1. A candidate without a value of the metric is never promoted.
2. The floor (``min_metric_value``; a ceiling for lower-is-better metrics) applies always, forced or not.
3. The first-ever version only has to pass the floor; a candidate that already is the champion stays.
4. Different label sets are never compared: the champion is kept unless ``force_promote``.
5. ``force_promote`` skips the comparison (a deliberate release), not the floor.
6. A champion without a value of the metric cannot be compared: it is kept.
7. Otherwise the candidate must be better by more than zero and by at least ``min_improvement``: on rows
   with a confidence, the interval's bound on the side of "better" must clear ``min_improvement``;
   otherwise (logged values, or ``confidence`` 0) the point difference. A tie keeps the champion.
8. A candidate the metric would promote is still refused when it fails more behavioural cases
   (``behaviour``) than the champion, beyond ``behaviour_tolerance`` (``behaviour_check``; like the
   comparison, ``force_promote`` skips it). Whatever the verdict, both counts and the candidate's failing
   cases are in the decision; with no champion, the candidate's alone (``tests/unit/gate/test_behaviour.py``).

``Decision``'s fields are the registry tags ``gate.<field>`` on the challenger's run (``Decision.tags``) and
its dump is the ``select_best`` task's ``decision`` XCom; the web page reads the tags back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from sentiflow.gate.behaviour import CaseFailure
from sentiflow.gate.policy import GatePolicy, below_floor, direction, improvement, lower_is_better
from sentiflow.names import TAG_GATE_PREFIX

if TYPE_CHECKING:  # numpy behind it: the DAG files import this module when they are parsed
    from sentiflow.gate.evidence import Evidence

#: ``comparison_method`` of a decision on the values the runs logged.
LOGGED_METRICS = "logged metrics"
#: The longest text of one ``gate.*`` tag; the failing cases are cut to whole cases within it.
TAG_TEXT_LIMIT = 5000


class Decision(BaseModel):
    """Whether the candidate replaces the champion, and everything the XCom, the tags and the page show."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    promote: bool
    reason: str
    metric: str  # the selection metric
    candidate_version: str
    candidate_run_id: str
    candidate_value: float | None = None
    champion_version: str | None = None
    champion_value: float | None = None
    comparable: bool = True
    champion_scored_on: str | None = None  # the rows both were scored on (a snapshot's manifest URI)
    scored_metric: str | None = None  # the metric computed on those rows (best_val_f1 → val_f1)
    difference: float | None = None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    confidence: float | None = None
    comparison_method: str | None = None
    p_value: float | None = None
    rows: int | None = None
    behaviour_cases: int | None = None  # behavioural cases both models were checked on
    behaviour_failed: int | None = None  # how many of them the candidate fails
    champion_behaviour_failed: int | None = None
    behaviour_skipped: str | None = None  # which cases were skipped, and why
    behaviour_failures: list[CaseFailure] | None = None  # the candidate's failing cases
    registered_model_name: str | None = None
    dag_run_id: str | None = None

    def tags(self) -> dict[str, str]:
        """``gate.<field>`` → text for every field that has a value (floats to 6 significant digits, the
        failing cases as a JSON list of as many whole cases as fit in a tag)."""
        out = {}
        for name in Decision.model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, list):
                text = _json_within([item.model_dump() for item in value], TAG_TEXT_LIMIT)
            else:
                text = f"{value:.6g}" if isinstance(value, float) else str(value)
            out[TAG_GATE_PREFIX + name] = text[:TAG_TEXT_LIMIT]
        return out


def _json_within(items: list[dict[str, Any]], limit: int) -> str:
    """The longest prefix of ``items`` whose JSON fits in ``limit`` characters."""
    text = json.dumps(items, ensure_ascii=False)
    while len(text) > limit:
        items = items[:-1]
        text = json.dumps(items, ensure_ascii=False)
    return text


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _floor_sentence(policy: GatePolicy, metric: str) -> str:
    bound = "at most" if lower_is_better(metric) else "at least"
    return f"the gate requires {bound} {policy.min_metric_value:.4f}; champion kept"


def judge(policy: GatePolicy, evidence: Evidence) -> Decision:
    """Promote ``evidence.candidate`` over the champion, or not, and say why (see the module's rules)."""
    if evidence.basis == "labels":
        decision = _labels_differ(policy, evidence)
    elif evidence.basis == "rows":
        decision = _on_rows(policy, evidence)
    else:
        decision = _logged(policy, evidence)
    return _behaviour(policy, evidence, decision)


def _behaviour(policy: GatePolicy, ev: Evidence, decision: Decision) -> Decision:
    """Rule 8 on the metric's decision: the behavioural results recorded, a regression refused."""
    results = ev.behaviour
    if results is None or not policy.behaviour_check:
        return decision
    failed = len(results.candidate)
    fields: dict[str, Any] = {
        "behaviour_cases": results.cases,
        "behaviour_failed": failed,
        "behaviour_skipped": results.skipped,
        "behaviour_failures": results.candidate,
    }
    if results.champion is None or ev.champion is None:
        return decision.model_copy(update=fields)
    champion_failed = fields["champion_behaviour_failed"] = len(results.champion)
    if not decision.promote or policy.force_promote or failed <= champion_failed + policy.behaviour_tolerance:
        return decision.model_copy(update=fields)
    reason = (
        f"version {ev.candidate.version} fails {failed} of {results.cases} behavioural cases, champion "
        f"version {ev.champion.version} {champion_failed} (tolerance {policy.behaviour_tolerance}): champion "
        "kept; "
        f"the metric alone would promote it: {decision.reason}"
    )
    return decision.model_copy(update={**fields, "promote": False, "reason": reason})


def _base(policy: GatePolicy, evidence: Evidence) -> dict[str, Any]:
    return {
        "metric": policy.selection_metric,
        "candidate_version": evidence.candidate.version,
        "candidate_run_id": evidence.candidate.run_id,
        "champion_version": None if evidence.champion is None else evidence.champion.version,
    }


def _logged(policy: GatePolicy, ev: Evidence) -> Decision:
    metric, version, value = ev.metric, ev.candidate.version, ev.candidate_value
    fields = {
        **_base(policy, ev),
        "candidate_value": value,
        "confidence": policy.confidence if policy.confidence > 0 else None,
        "comparison_method": LOGGED_METRICS,
    }

    def decide(promote: bool, reason: str, champion_value: float | None = None) -> Decision:
        if ev.note:
            reason = f"{reason} ({ev.note})"
        return Decision(promote=promote, reason=reason, champion_value=champion_value, **fields)

    if value is None:
        return decide(False, f"version {version} did not log {metric!r}; nothing to promote")
    if below_floor(value, policy.min_metric_value, metric):
        return decide(False, f"version {version} has {metric}={value:.4f}; {_floor_sentence(policy, metric)}")
    champion = ev.champion
    if champion is None:
        return decide(True, f"version {version} is the first champion ({metric}={value:.4f})")
    if champion.version == version:
        return decide(False, f"version {version} is already the champion ({metric}={value:.4f})", value)
    champion_value = ev.champion_value
    versus = f"version {version} has {metric}={value:.4f} vs champion version {champion.version}"
    if policy.force_promote:
        return decide(
            True,
            f"{versus} {_fmt(champion_value)}: promotion forced (force_promote), the comparison was skipped",
            champion_value,
        )
    if champion_value is None:
        return decide(
            False,
            f"champion version {champion.version} has no {metric!r} to compare with; champion kept "
            "(choose a metric both versions logged, or promote by hand)",
        )
    gain = improvement(value, champion_value, metric)
    head = f"{versus} {champion_value:.4f} ({direction(metric)} is better): improvement {gain:+.4f}"
    if gain <= 0 or gain < policy.min_improvement:
        return decide(
            False,
            f"{head} is below the required {policy.min_improvement:.4f} (and must be > 0); champion kept",
            champion_value,
        )
    return decide(True, f"{head} >= {policy.min_improvement:.4f}", champion_value)


def _on_rows(policy: GatePolicy, ev: Evidence) -> Decision:
    metric, cand, champ = ev.metric, ev.candidate_value, ev.champion_value
    if cand is None or champ is None or ev.champion is None:
        raise ValueError("evidence on rows has both values and a champion (Evidence.on_rows)")
    head = (
        f"version {ev.candidate.version} has {metric}={cand:.4f} vs champion version {ev.champion.version} "
        f"{champ:.4f} on the same {ev.row_count} validation rows ({ev.scored_on})"
    )
    fields: dict[str, Any] = {
        **_base(policy, ev),
        "candidate_value": cand,
        "champion_value": champ,
        "difference": cand - champ,
        "champion_scored_on": ev.scored_on,
        "scored_metric": metric,
        "rows": ev.row_count,
    }
    if below_floor(cand, policy.min_metric_value, metric):
        return Decision(promote=False, reason=f"{head}; {_floor_sentence(policy, metric)}", **fields)
    interval = ev.interval(policy.confidence)
    if interval is not None:
        fields.update(
            difference_ci_low=interval.low,
            difference_ci_high=interval.high,
            confidence=policy.confidence,
            comparison_method=interval.method,
            p_value=interval.p_value,
        )
    if policy.force_promote:
        reason = f"{head}: promotion forced (force_promote), the comparison did not decide"
        return Decision(promote=True, reason=reason, **fields)
    head = f"{head} ({direction(metric)} is better)"
    required = policy.min_improvement
    if interval is None:
        gain = improvement(cand, champ, metric)
        ok = gain > 0 and gain >= required
        verdict = (
            f"improvement {gain:+.4f} {'>=' if ok else 'is below'} the required {required:.4f}"
            f"{'' if ok else ' (and must be > 0); champion kept'} (confidence 0: no interval)"
        )
        return Decision(promote=ok, reason=f"{head}: {verdict}", **fields)
    # the bound on the side of "better": the worst case the data allow for the challenger
    worst = -interval.high if lower_is_better(metric) else interval.low
    ci = (
        f"{policy.confidence:.0%} interval of the difference [{interval.low:+.4f}, {interval.high:+.4f}] "
        f"({interval.method})"
    )
    ok = worst > required
    if ok:
        verdict = f"{ci} clears the required improvement {required:.4f}: promoted"
    else:
        verdict = (
            f"{ci} does not clear the required improvement {required:.4f}: the difference may be chance; "
            "champion kept"
        )
    return Decision(promote=ok, reason=f"{head}: {verdict}", **fields)


def _labels_differ(policy: GatePolicy, ev: Evidence) -> Decision:
    sets, champion, force = ev.labels, ev.champion, policy.force_promote
    if sets is None or champion is None:
        raise ValueError("evidence of different label sets names both sets and a champion")
    fields = {**_base(policy, ev), "comparable": False, "champion_scored_on": ev.scored_on}
    version = ev.candidate.version
    what = (
        f"champion version {champion.version} predicts {sets.champion} but version {version} predicts "
        f"{sets.candidate}: different label sets, the two models are not comparable"
    )
    if (
        force
        and ev.candidate_value is not None
        and below_floor(ev.candidate_value, policy.min_metric_value, ev.metric)
    ):
        value = f"{ev.metric}={ev.candidate_value:.4f}"
        reason = f"{what}; version {version} has {value}; {_floor_sentence(policy, ev.metric)}"
        return Decision(promote=False, reason=reason, **fields)
    if (
        sets.rows is not None
        and sorted(sets.candidate) != sorted(sets.rows)
        and sorted(sets.candidate) == sorted(sets.champion)
    ):
        reason = (
            f"version {version} predicts {sets.candidate} but the rows of {ev.scored_on} are labelled "
            f"{sets.rows}; {'promotion forced' if force else 'champion kept'}"
        )
    elif force:
        reason = f"{what}; promotion forced (force_promote)"
    else:
        reason = (
            f"{what}; champion kept. Promote it with force_promote, or train this dataset into another "
            "registered model (registered_model_name)"
        )
    return Decision(promote=force, reason=reason, **fields)
