"""A third model family, kept outside the library: always the training split's most frequent class.

One folder (this entry, its model and training in ``model.py``) plus one registration line (its package in
``SENTIFLOW_TRAIN_FAMILY_PACKAGES``) give it a training task in the pipeline, its trigger-form fields, a
registered MLflow version and a served model (``test_third_family.py``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sentiflow.families.catalogue import ModelFamily
from sentiflow.names import DEFAULT_SEED

NAME = "majority"


class MajorityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smoothing: float = Field(default=1.0, ge=0, description="Added to every class count (Laplace).")
    train_subset_size: int | None = Field(default=None, ge=1)
    eval_subset_size: int | None = Field(default=None, ge=1)
    seed: int = DEFAULT_SEED


class MajorityForm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    train_majority: bool = Field(default=True, title="Train the majority class", description="A floor.")
    majority_smoothing: float = Field(
        default=1.0, ge=0, title="Majority smoothing", description="Added to every class count."
    )


def _from_form(forms: list[Any], seed: int) -> MajorityParams:
    (form,) = forms
    return MajorityParams(smoothing=form.majority_smoothing, seed=seed)


FAMILY = ModelFamily(
    name=NAME,
    params=MajorityParams,
    training=f"{__name__}.model:run_majority",
    classifier=f"{__name__}.model:MajorityClassifier",
    form=(MajorityForm,),
    switch="train_majority",
    params_from_form=_from_form,
)
