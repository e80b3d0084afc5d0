"""What the inference check sends and how much it must get right, for the version just deployed.

Reads the deployed version's MLflow run: its ``dataset_manifest_uri`` tag names the snapshot whose test
split gives the sampled cases, its ``test_accuracy`` metric sets the default required accuracy. The trigger's
own cases (``check_texts`` or ``check_csv_uri``) are added to the sampled ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sentiflow.names import SEED, TAG_DATASET_MANIFEST, split_metric
from sentiflow.release.checks import (
    DEFAULT_ACCURACY_MARGIN,
    DEFAULT_CASES_PER_CLASS,
    CheckCase,
    InferenceCheckError,
    cases_from_csv,
    required_accuracy,
    sample_cases,
    user_cases,
)


@dataclass(frozen=True)
class CheckPlan:
    cases: list[CheckCase]
    required_accuracy: float
    sampled_from: str | None
    sampled: int


def _number(params: Mapping[str, Any], key: str, default: float) -> float:
    raw = params.get(key)
    return default if raw in (None, "") else float(raw)


def plan_check(store: Any, client: Any, run_id: str | None, params: Mapping[str, Any]) -> CheckPlan:
    """Sampled cases from the run's test snapshot + the trigger's cases, and the required accuracy."""
    from sentiflow.data.snapshot import SnapshotError, read_manifest, read_split

    per_class = int(_number(params, "check_cases_per_class", DEFAULT_CASES_PER_CLASS))
    margin = _number(params, "check_accuracy_margin", DEFAULT_ACCURACY_MARGIN)
    run = client.get_run(run_id) if run_id else None
    tags = dict(run.data.tags) if run else {}
    metrics = dict(run.data.metrics) if run else {}
    manifest_uri = tags.get(TAG_DATASET_MANIFEST)
    sampled: list[CheckCase] = []
    if per_class > 0:
        if not manifest_uri:
            raise InferenceCheckError(
                f"run {run_id} names no dataset snapshot to draw check cases from; give check_texts or "
                "check_csv_uri and set check_cases_per_class to 0"
            )
        try:
            manifest = read_manifest(store, manifest_uri)
            test = read_split(store, manifest, "test")
        except SnapshotError as exc:
            raise InferenceCheckError(f"cannot draw check cases: {exc}") from exc
        seed = int(_number(params, SEED, 42))
        sampled = sample_cases(test, manifest.label_names, per_class, seed)
    if params.get("check_csv_uri"):
        given = cases_from_csv(store.read_location(params["check_csv_uri"]), params["check_csv_uri"])
    else:
        given = user_cases(params.get("check_texts"))
    cases = sampled + given
    if not cases:
        raise InferenceCheckError(
            "no check cases: check_cases_per_class is 0 and the trigger gave no check_texts or check_csv_uri"
        )
    required = required_accuracy(
        params.get("check_min_accuracy"), metrics.get(split_metric("test", "accuracy")), margin
    )
    return CheckPlan(cases, required, manifest_uri if sampled else None, len(sampled))
