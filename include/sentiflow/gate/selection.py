"""Choosing the best model version and deciding whether it may replace the champion: pure functions.

No MLflow here: callers read metrics from runs (``registry.candidates_*``) and pass plain values, so every
rule (ties, missing metrics, the first-ever version, lower-is-better metrics) is unit-tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sentiflow.names import LOWER_IS_BETTER
from sentiflow.registry import Candidate


class SelectionError(ValueError):
    """No candidate can be chosen (none given, or none logged the selection metric)."""


def lower_is_better(metric: str) -> bool:
    """Losses and times are minimised; everything else (accuracy, F1, AUC...) is maximised."""
    return metric in LOWER_IS_BETTER


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def improvement(candidate_value: float, reference_value: float, metric: str) -> float:
    """How much better the candidate is than the reference, in the metric's units (positive = better)."""
    delta = candidate_value - reference_value
    return -delta if lower_is_better(metric) else delta


def pick_best(candidates: Iterable[Candidate], metric: str) -> Candidate:
    """The candidate with the best value of ``metric``.

    Candidates that did not log the metric (or logged NaN) are skipped, not treated as zero. Ties go to the
    newest version (the highest number): it was trained on the freshest data.
    """
    pool = list(candidates)
    if not pool:
        raise SelectionError(f"no model versions to select from (selection metric {metric!r})")
    usable = [c for c in pool if c.value(metric) is not None]
    if not usable:
        logged = sorted({name for c in pool for name in c.metrics})
        raise SelectionError(
            f"none of versions {', '.join(c.version for c in pool)} logged metric {metric!r}; "
            f"metrics they logged: {', '.join(logged) or 'none'}"
        )
    sign = -1.0 if lower_is_better(metric) else 1.0
    return max(usable, key=lambda c: (sign * c.value(metric), _version_key(c.version)))  # type: ignore[operator]


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote ``candidate`` to champion, and a sentence that says why (shown in the UI log)."""

    promote: bool
    reason: str
    metric: str
    candidate: Candidate
    candidate_value: float | None
    champion: Candidate | None = None
    champion_value: float | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-safe summary for XCom (versions and numbers only)."""
        return {
            "promote": self.promote,
            "reason": self.reason,
            "metric": self.metric,
            "candidate_version": self.candidate.version,
            "candidate_run_id": self.candidate.run_id,
            "candidate_value": self.candidate_value,
            "champion_version": self.champion.version if self.champion else None,
            "champion_value": self.champion_value,
        }


def gate(
    candidate: Candidate,
    champion: Candidate | None,
    metric: str,
    *,
    min_improvement: float = 0.0,
    min_metric_value: float | None = None,
    force: bool = False,
) -> GateDecision:
    """Promote only a candidate that reaches ``min_metric_value`` and strictly beats the champion.

    - ``min_metric_value`` is a floor for maximised metrics and a ceiling for minimised ones.
    - With a champion, the candidate must be better by at least ``min_improvement`` and by more than zero
      (a tie keeps the champion: no churn, no redeploy for nothing).
    - The first-ever version only has to pass ``min_metric_value``.
    - A champion that never logged the metric cannot be compared: it is kept, and the reason says so
      (pick a metric both logged, or promote by hand).
    - ``force`` skips the comparison with the champion (a deliberate release, e.g. after a dataset change
      made the numbers incomparable, or a rollback rehearsal); ``min_metric_value`` still applies, and
      the reason says the promotion was forced.
    """
    if min_improvement < 0 or not math.isfinite(min_improvement):
        raise ValueError(f"min_improvement must be a finite number >= 0, got {min_improvement}")
    value = candidate.value(metric)
    direction = "lower" if lower_is_better(metric) else "higher"

    def decide(promote: bool, reason: str, champion_value: float | None = None) -> GateDecision:
        return GateDecision(promote, reason, metric, candidate, value, champion, champion_value)

    if value is None:
        return decide(False, f"version {candidate.version} did not log {metric!r}; nothing to promote")
    if min_metric_value is not None:
        too_low = value > min_metric_value if lower_is_better(metric) else value < min_metric_value
        if too_low:
            bound = "at most" if lower_is_better(metric) else "at least"
            return decide(
                False,
                f"version {candidate.version} has {metric}={value:.4f}; the gate requires {bound} "
                f"{min_metric_value:.4f}; champion kept",
            )
    if champion is None:
        return decide(True, f"version {candidate.version} is the first champion ({metric}={value:.4f})")
    if champion.version == candidate.version:
        return decide(
            False, f"version {candidate.version} is already the champion ({metric}={value:.4f})", value
        )
    champion_value = champion.value(metric)
    if force:
        shown = "n/a" if champion_value is None else f"{champion_value:.4f}"
        return decide(
            True,
            f"version {candidate.version} has {metric}={value:.4f} vs champion version {champion.version} "
            f"{shown}: promotion forced (force_promote), the comparison was skipped",
            champion_value,
        )
    if champion_value is None:
        return decide(
            False,
            f"champion version {champion.version} has no {metric!r} to compare with; champion kept "
            "(choose a metric both versions logged, or promote by hand)",
        )
    gain = improvement(value, champion_value, metric)
    if gain <= 0 or gain < min_improvement:
        return decide(
            False,
            f"version {candidate.version} has {metric}={value:.4f} vs champion version {champion.version} "
            f"{champion_value:.4f} ({direction} is better): improvement {gain:+.4f} is below the required "
            f"{max(min_improvement, 0.0):.4f} (and must be > 0); champion kept",
            champion_value,
        )
    return decide(
        True,
        f"version {candidate.version} has {metric}={value:.4f} vs champion version {champion.version} "
        f"{champion_value:.4f} ({direction} is better): improvement {gain:+.4f} >= {min_improvement:.4f}",
        champion_value,
    )
