"""The gate's policy: which metric decides, in which direction, and what a challenger must show to replace
the champion (a floor, a required improvement, a confidence, no more behavioural failures), or that a person
forces it.

One typed model, ``GatePolicy``: the DAGs' trigger form generates its *Selection and promotion gate* fields
from it (``sentiflow.orchestration.model_form``), ``validate_params`` validates a trigger into it, and
``judge`` reads it. Defaults, bounds and descriptions are written here only.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sentiflow.names import BEST_VAL_F1, VAL_ACCURACY, VAL_AUC, VAL_F1, VAL_F1_WEIGHTED, lower_is_better

#: What the form suggests for ``selection_metric`` (any logged metric is accepted).
SELECTION_METRICS = [BEST_VAL_F1, VAL_F1_WEIGHTED, VAL_ACCURACY, VAL_AUC, VAL_F1]


def direction(metric: str) -> Literal["higher", "lower"]:
    """Which way ``metric`` is better, in words."""
    return "lower" if lower_is_better(metric) else "higher"


def improvement(candidate_value: float, reference_value: float, metric: str) -> float:
    """How much better the candidate is than the reference, in the metric's units (positive = better)."""
    delta = candidate_value - reference_value
    return -delta if lower_is_better(metric) else delta


def below_floor(value: float, floor: float | None, metric: str) -> bool:
    """Whether ``value`` misses ``floor`` (a ceiling for lower-is-better metrics); no floor misses nothing."""
    if floor is None:
        return False
    return value > floor if lower_is_better(metric) else value < floor


class GatePolicy(BaseModel):
    """What a challenger must show to replace the champion. Unknown keys are refused (a typo fails loudly)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selection_metric: str = Field(
        default=BEST_VAL_F1,
        pattern=r"\S",  # not empty, not only blanks
        examples=SELECTION_METRICS,
        title="Selection metric",
        description="Metric that picks the best version (any logged metric; losses and times are minimised).",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        title="Minimum improvement",
        description="Promote only if better than the champion by at least this (in the metric's units).",
    )
    min_metric_value: float | None = Field(
        default=None,
        title="Minimum metric value",
        description="Promote only if the metric reaches this (a ceiling for lower-is-better metrics); "
        "empty = no floor.",
    )
    confidence: float = Field(
        default=0.95,
        ge=0,
        lt=1,
        title="Confidence",
        description="Champion and challenger are scored on this run's validation rows; promote only when "
        "this confidence interval of challenger − champion (paired bootstrap; McNemar for accuracy) "
        "clears the minimum improvement. 0 = compare the point values.",
    )
    behaviour_check: bool = Field(
        default=True,
        title="Behavioural check",
        description="Both models also predict the gate's behavioural cases (invariance to names, places "
        "and typos; negation; clearly labelled reviews: sentiflow/gate/behaviour_cases.yaml); a challenger "
        "that fails more of them than the champion (beyond the tolerance) is refused.",
    )
    behaviour_tolerance: int = Field(
        default=0,
        ge=0,
        title="Behavioural tolerance",
        description="How many more behavioural cases the challenger may fail than the champion.",
    )
    force_promote: bool = Field(
        default=False,
        title="Force promotion",
        description="Promote the selected version even if it does not beat the champion (it must still "
        "reach the minimum metric value); the inference check and its rollback still apply.",
    )

    @field_validator("min_improvement")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"min_improvement must be a finite number >= 0, got {value}")
        return value

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.selection_metric)

    @property
    def direction(self) -> Literal["higher", "lower"]:
        return direction(self.selection_metric)
