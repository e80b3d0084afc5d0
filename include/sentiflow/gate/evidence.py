"""What the gate weighs: the challenger's and the champion's values of one metric, and where they come from.

Three kinds, each built by one constructor:

- ``Evidence.logged``: the metrics each run logged (the first champion, a candidate that already is the
  champion, a metric predictions cannot give, a run that names no snapshot);
- ``Evidence.on_rows``: both models' predictions on the same validation rows, the metric computed by the
  training code and a paired interval of the difference on demand (``comparison``);
- ``Evidence.labels_differ``: the two models predict different label sets; no number compares them.

Any of them may carry both models' results on the behavioural cases (``behaviour``), which ``judge`` weighs
after the metric. Pure values (arrays included); the MLflow/S3 side that gathers them is ``scoring``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sentiflow.gate.behaviour import BehaviourResults
from sentiflow.gate.comparison import ComparisonError, Interval, difference_interval, metric_value, row_metric
from sentiflow.registry import Candidate

Basis = Literal["logged", "rows", "labels"]


@dataclass(frozen=True, eq=False)
class RowScores:
    """Both models' probabilities on the same rows (columns in the rows' label order) and the row labels."""

    labels: np.ndarray
    candidate_probs: np.ndarray
    champion_probs: np.ndarray
    seed: int = 0
    _intervals: dict[tuple[str, float], Interval] = field(default_factory=dict, repr=False)

    def interval(self, metric: str, confidence: float) -> Interval:
        """The paired interval of ``metric`` at ``confidence`` (computed once: a bootstrap takes a while)."""
        key = (metric, confidence)
        if key not in self._intervals:
            self._intervals[key] = difference_interval(
                self.labels, self.candidate_probs, self.champion_probs, metric, confidence, seed=self.seed
            )
        return self._intervals[key]


@dataclass(frozen=True)
class LabelSets:
    """The label names each side predicts, and those of the rows (when the rows were read)."""

    candidate: list[str]
    champion: list[str]
    rows: list[str] | None = None


@dataclass(frozen=True)
class Evidence:
    """The challenger (``candidate``) against the champion, on one basis; values are of ``metric``.

    ``metric`` is the selection metric for logged values, the per-row metric computed on rows (``best_val_f1``
    → ``val_f1``) for ``rows``. ``scored_on`` names the rows (a snapshot's manifest URI); ``note`` says why
    logged values were compared although a champion exists.
    """

    basis: Basis
    metric: str
    candidate: Candidate
    candidate_value: float | None
    champion: Candidate | None = None
    champion_value: float | None = None
    rows: RowScores | None = None
    labels: LabelSets | None = None
    scored_on: str | None = None
    note: str | None = None
    behaviour: BehaviourResults | None = None

    @property
    def row_count(self) -> int | None:
        return None if self.rows is None else len(self.rows.labels)

    def interval(self, confidence: float) -> Interval | None:
        """The paired interval of challenger − champion at ``confidence`` (rows only; 0: none)."""
        if self.rows is None or confidence <= 0:
            return None
        return self.rows.interval(self.metric, confidence)

    @classmethod
    def logged(
        cls, candidate: Candidate, champion: Candidate | None, metric: str, *, note: str | None = None
    ) -> Evidence:
        return cls(
            "logged",
            metric,
            candidate,
            candidate.value(metric),
            champion,
            None if champion is None else champion.value(metric),
            note=note,
        )

    @classmethod
    def on_rows(
        cls,
        candidate: Candidate,
        champion: Candidate,
        metric: str,
        *,
        labels: np.ndarray,
        candidate_probs: np.ndarray,
        champion_probs: np.ndarray,
        scored_on: str,
        seed: int = 0,
    ) -> Evidence:
        """Both models on the same rows; ``ComparisonError`` when ``metric`` cannot be computed on them."""
        computed = row_metric(metric)
        if computed is None:
            raise ComparisonError(f"{metric!r} cannot be computed from predictions on rows")
        labels = np.asarray(labels).astype(int)
        candidate_value = metric_value(labels, candidate_probs, computed)
        champion_value = metric_value(labels, champion_probs, computed)
        if candidate_value is None or champion_value is None:
            raise ComparisonError(f"{computed} is undefined on the {len(labels)} validation rows")
        scores = RowScores(labels, np.asarray(candidate_probs), np.asarray(champion_probs), seed)
        return cls(
            "rows", computed, candidate, candidate_value, champion, champion_value, rows=scores,
            scored_on=scored_on,
        )  # fmt: skip

    @classmethod
    def labels_differ(
        cls,
        candidate: Candidate,
        champion: Candidate,
        metric: str,
        *,
        candidate_labels: Sequence[str],
        champion_labels: Sequence[str],
        row_labels: Sequence[str] | None = None,
        scored_on: str | None = None,
    ) -> Evidence:
        """Different label sets: only the candidate's logged value (for the floor) is kept."""
        rows = None if row_labels is None else list(row_labels)
        sets = LabelSets(list(candidate_labels), list(champion_labels), rows)
        return cls(
            "labels", metric, candidate, candidate.value(metric), champion, None, labels=sets,
            scored_on=scored_on,
        )  # fmt: skip
