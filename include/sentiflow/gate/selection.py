"""Choosing the best model version among candidates by one metric: a pure function.

No MLflow here: callers read metrics from runs (``registry.candidates_*``) and pass plain values, so every
rule (ties, missing metrics, lower-is-better metrics) is unit-tested directly. Whether the chosen version may
replace the champion is ``judge``'s question. The web page (``serving/ui.py``) uses the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from sentiflow.gate.policy import lower_is_better
from sentiflow.registry import Candidate

__all__ = ["Candidate", "SelectionError", "lower_is_better", "pick_best"]


class SelectionError(ValueError):
    """No candidate can be chosen (none given, or none logged the selection metric)."""


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def pick_best(candidates: Iterable[Candidate], metric: str) -> Candidate:
    """The candidate with the best value of ``metric``.

    Candidates that did not log the metric (or logged NaN) are skipped, not treated as zero. Ties go to the
    newest version (the highest number): it was trained on the freshest data.
    """
    pool = list(candidates)
    if not pool:
        raise SelectionError(f"no model versions to select from (selection metric {metric!r})")
    scored = [(value, c) for c in pool if (value := c.value(metric)) is not None]
    if not scored:
        logged = sorted({name for c in pool for name in c.metrics})
        raise SelectionError(
            f"none of versions {', '.join(c.version for c in pool)} logged metric {metric!r}; "
            f"metrics they logged: {', '.join(logged) or 'none'}"
        )
    sign = -1.0 if lower_is_better(metric) else 1.0
    return max(scored, key=lambda vc: (sign * vc[0], _version_key(vc[1].version)))[1]
