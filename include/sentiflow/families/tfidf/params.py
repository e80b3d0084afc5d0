"""The TF-IDF baseline's parameters: one model for the CLI, the trigger form's JSON object and validation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sentiflow.names import DEFAULT_SEED


class BaselineParams(BaseModel):
    """TF-IDF (word n-grams) + logistic regression, on the same splits as the transformer."""

    model_config = ConfigDict(extra="forbid")

    C: float = Field(default=4.0, gt=0, description="Inverse regularisation strength.")
    ngram_max: int = Field(default=2, ge=1, le=3)
    max_features: int | None = Field(default=400_000, ge=1)
    train_subset_size: int | None = Field(default=None, ge=1)
    eval_subset_size: int | None = Field(default=None, ge=1)
    max_train_rows: int | None = Field(
        default=200_000,
        ge=1,
        description="The baseline refuses to train on more rows (TF-IDF holds them in memory, about 20 KiB "
        "a row); set train_subset_size to train on a sample. Empty: no limit.",
    )
    seed: int = DEFAULT_SEED


class TfidfForm(BaseModel):
    """The pipeline trigger form's fields of the TF-IDF baseline: its switch and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_baseline: bool = Field(
        default=True,
        title="Train the TF-IDF baseline",
        description="Also train TF-IDF + logistic regression in parallel; selection compares both families.",
    )
    baseline_params: dict[str, Any] = Field(
        default_factory=dict,
        title="Baseline parameters",
        description='BaselineParams fields, e.g. {"C": 4.0, "ngram_max": 2}.',
    )


def params_from_form(forms: list[Any], seed: int) -> BaselineParams:
    """``BaselineParams`` from ``baseline_params``, with the run's seed unless it names its own."""
    (form,) = forms
    return BaselineParams.model_validate({"seed": seed, **form.baseline_params})
