"""What the inference check sends and how much it must get right, for the version just deployed.

Reads the deployed version's MLflow run: its ``dataset_manifest_uri`` tag names the snapshot whose test
split gives the sampled cases, its ``test_accuracy`` metric sets the default required accuracy. The trigger's
own cases (``check_texts`` or ``check_csv_uri``) are added to the sampled ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from sentiflow.names import LABEL_COLUMN, TAG_DATASET_MANIFEST, TEXT_COLUMN, split_metric
from sentiflow.release.checks import (
    DEFAULT_ACCURACY_MARGIN,
    DEFAULT_CASES_PER_CLASS,
    DEFAULT_CHECK_CASES,
    CheckCase,
    InferenceCheckError,
    cases_from_csv,
    cases_from_records,
    required_accuracy,
    sample_cases_from,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from sentiflow.storage import ObjectStore


class CheckParams(BaseModel):
    """The inference check's parameters: the trigger form's *Inference check* section is generated from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check_cases_per_class: int = Field(
        default=DEFAULT_CASES_PER_CLASS,
        ge=0,
        title="Check cases per class",
        description="Labelled texts per class drawn (seeded) from the deployed model's test snapshot and "
        "sent to the server; 0 = only the texts below.",
    )
    check_texts: list[dict[str, Any]] = Field(
        default_factory=list,
        title="Check texts",
        description='Your own texts with their expected label ({"text", "label"}), sent as well.',
        examples=[DEFAULT_CHECK_CASES],
        json_schema_extra={"items": {"type": "object", "required": ["text", "label"]}},
    )
    check_csv_uri: str | None = Field(
        default=None,
        title="Check CSV",
        description="s3:// or local CSV with text,label columns; replaces the texts above.",
    )
    check_min_accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        title="Required accuracy",
        description="Below this the release rolls back and the run fails; empty = the model's offline "
        "test accuracy minus the margin below.",
    )
    check_accuracy_margin: float = Field(
        default=DEFAULT_ACCURACY_MARGIN,
        ge=0,
        le=1,
        title="Accuracy margin",
        description="With no required accuracy: how far below its test accuracy the model may score on "
        "the check cases (few cases are noisy).",
    )


@dataclass(frozen=True)
class CheckPlan:
    cases: list[CheckCase]
    required_accuracy: float
    sampled_from: str | None
    sampled: int


def plan_check(
    store: ObjectStore, client: MlflowClient, run_id: str | None, params: CheckParams, *, seed: int
) -> CheckPlan:
    """Sampled cases (``seed``) from the run's test snapshot + the trigger's cases; the required accuracy."""
    from sentiflow.data.snapshot import SnapshotError, iter_frames, read_manifest

    per_class = params.check_cases_per_class
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
            manifest.split("test")
            sampled = sample_cases_from(
                lambda: iter_frames(store, manifest, "test", columns=[TEXT_COLUMN, LABEL_COLUMN]),
                manifest.label_names,
                per_class,
                seed,
            )
        except SnapshotError as exc:
            raise InferenceCheckError(f"cannot draw check cases: {exc}") from exc
    if params.check_csv_uri:
        given = cases_from_csv(store.read_location(params.check_csv_uri), params.check_csv_uri)
    else:  # none is fine: the sampled cases are the default
        given = cases_from_records(params.check_texts) if params.check_texts else []
    cases = sampled + given
    if not cases:
        raise InferenceCheckError(
            "no check cases: check_cases_per_class is 0 and the trigger gave no check_texts or check_csv_uri"
        )
    required = required_accuracy(
        params.check_min_accuracy, metrics.get(split_metric("test", "accuracy")), params.check_accuracy_margin
    )
    return CheckPlan(cases, required, manifest_uri if sampled else None, len(sampled))
