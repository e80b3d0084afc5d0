"""The DAGs' parameter groups, each a typed model: dataset, feedback, training switches, selection and gate.

Each model is the one definition of its fields (title, description, type, bounds, default): the trigger form
is generated from it (``model_form``), ``validate_params`` validates a trigger into it, and the tasks receive
it (its JSON through XCom, parsed back by the model), never a raw param by name. The other groups live with
the code that uses them: each model family's (``sentiflow.families.<name>.params``), ``GatePolicy``
(``sentiflow.gate.policy``, extended here by the selection's own fields) and ``CheckParams``
(``sentiflow.release.check_plan``). Defaults that a deployment sets come from settings, read when the DAG
is parsed: ``PipelineDefaults`` (``SENTIFLOW_DEFAULT_*``) and ``PipelineSettings`` (``SENTIFLOW_PIPELINE_*``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from sentiflow import names
from sentiflow.gate.policy import GatePolicy
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.settings.components import PipelineDefaults


def _dataset() -> str:
    return PipelineDefaults().dataset


class DatasetParams(BaseModel):
    """What ``collect`` reads and how it samples it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(
        default_factory=_dataset,
        min_length=1,
        title="Dataset",
        description="Hugging Face dataset name, a local folder/file, or an s3:// URI (parquet/CSV with "
        "train/test files).",
    )
    dataset_config: str | None = Field(
        default=None,
        title="Dataset config",
        description="Hub dataset configuration (subset) name, if it has several.",
    )
    text_column: str | None = Field(
        default=None, title="Text column", description="Column holding the text; empty = detect it."
    )
    label_column: str | None = Field(
        default=None, title="Label column", description="Column holding the label; empty = detect it."
    )
    label_names: Annotated[
        list[Any] | dict[str, Any] | None, WithJsonSchema({"type": ["null", "array", "object"]})
    ] = Field(
        default=None,
        title="Label names",
        description="Names of integer label ids: a list in ascending id order (ids -1,0,1 → "
        '["negative", "neutral", "positive"]) or an object {"-1": "negative", ...}; empty = from '
        "the source's schema, else sentiment names by count.",
    )
    sample_size: int | None = Field(
        default=None,
        ge=1,
        title="Train sample",
        description="Stratified sample of the train split (rows); empty = all.",
    )
    eval_sample_size: int | None = Field(
        default=None,
        ge=1,
        title="Eval sample",
        description="Stratified sample of validation and test (rows each); empty = all.",
    )


def _use_feedback() -> bool:
    return PipelineSettings().use_feedback


def _feedback_max_fraction() -> float:
    return PipelineSettings().feedback_max_fraction


class FeedbackParams(BaseModel):
    """Whether ``training_data`` merges the model server's feedback, and how much (``sentiment_pipeline``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    use_feedback: bool = Field(
        default_factory=_use_feedback,
        title="Train with user feedback",
        description="Merge the model server's labelled feedback since the last export into the training "
        "split (never validation/test). On by default, so the weekly retrain uses it; the run fails if "
        "the server cannot be reached (turn this off to train without it).",
    )
    feedback_max_fraction: float = Field(
        default_factory=_feedback_max_fraction,
        ge=0,
        title="Most feedback per training row",
        description="At most this many feedback rows are added per row of the training split (0.1 = "
        "10%; the most recent win). Only feedback that cites a signed prediction is used.",
    )


def _train_backend() -> Literal["kubernetes", "local"]:
    return PipelineSettings().train_backend


class TrainingOptions(BaseModel):
    """Both DAGs' training switch beside the families' own fields: where training runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_backend: Literal["kubernetes", "local"] = Field(
        default_factory=_train_backend,
        title="Training backend",
        description="kubernetes: a GPU pod (KubernetesPodOperator); local: the same entrypoint on the "
        "Airflow worker. Default: SENTIFLOW_PIPELINE_TRAIN_BACKEND.",
    )


class PipelineTraining(TrainingOptions):
    """``sentiment_pipeline``'s training switches; which families train is each family's own form field."""


def _grid() -> dict[str, Any]:
    return {names.LEARNING_RATE: [3e-5, 5e-5], names.NUM_TRAIN_EPOCHS: [1, 2]}


class SweepTraining(TrainingOptions):
    """``sentiment_sweep``'s grid: one training run per combination."""

    grid: dict[str, Any] = Field(
        default_factory=_grid,
        title="Grid",
        description="Hyperparameter name → list of values; one MLflow run and registry version per "
        "combination.",
    )


def _registered_model_field(what: str) -> Any:
    """The ``registered_model_name`` field of the DAGs that name a registered model; ``what`` says its use."""
    return Field(
        default=None,
        pattern="^[^'\"]*$",  # MLflow search filters quote the name
        max_length=256,
        title="Registered model",
        description=f"{what}; empty = SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME. Only that default model is "
        "deployed to the model server.",
    )


def _selection_scope() -> Literal["this_run", "all_versions"]:
    return PipelineSettings().selection_scope


class SelectionParams(GatePolicy):
    """The gate's policy plus what selection chooses among and which registered model the run uses."""

    selection_scope: Literal["this_run", "all_versions"] = Field(
        default_factory=_selection_scope,
        title="Selection scope",
        description="Choose among this run's versions or all versions of the registered model. Default: "
        "SENTIFLOW_PIPELINE_SELECTION_SCOPE.",
    )
    registered_model_name: str | None = _registered_model_field(
        "MLflow registered model this run trains into and promotes in (one Airflow, several models, e.g. "
        "one per label set)"
    )


# --- sentiment_release: one named, already registered version through the pipeline's release tasks ------
class ReleaseRequest(BaseModel):
    """``sentiment_release``'s request: which registered version, who asks, and why the gate is overridden.

    The field names are the trigger conf's keys the model server sends (``names.RELEASE_*``,
    ``names.FORCE_REASON``); ``force_promote`` itself is the gate policy's (``ReleasePolicy``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(
        pattern=r"^[0-9]+$",
        max_length=20,
        title="Version",
        description='The registered version to release: its number as text, e.g. "4". It must already '
        "exist in the registered model (trained by a pipeline run or registered by hand).",
    )
    requested_by: str = Field(
        pattern=r"\S",  # not empty, not only blanks
        max_length=200,
        title="Requested by",
        description="Who asks for this release: recorded on the version (registry tag) and in the run.",
    )
    force_reason: str | None = Field(
        default=None,
        max_length=2000,
        title="Reason for forcing",
        description="Required with force_promote: why the gate's comparison is overridden; recorded on "
        "the version and in the run.",
    )


class ReleasePolicy(GatePolicy):
    """The gate of a manual release: the pipeline's policy on the one named version (no selection scope)."""

    registered_model_name: str | None = _registered_model_field(
        "MLflow registered model the version belongs to and the release promotes in"
    )

    def selection(self) -> SelectionParams:
        """The pipeline's ``SelectionParams``: the release's one version is "this run's" only candidate."""
        return SelectionParams(**self.model_dump(), selection_scope="this_run")


class CheckSeed(BaseModel):
    """The seed of the inference check's cases drawn from the released model's test snapshot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(
        default=names.DEFAULT_SEED,
        title="Seed",
        description="Seed of the check cases drawn from the released model's test snapshot.",
    )


class ReleaseOrder(BaseModel):
    """A manual release as validated before anything runs: the request and the gate's policy together.

    ``force_promote`` overrides the gate's comparison only with a written reason (the reason is what is left
    of the decision on the version and in the run).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: ReleaseRequest
    policy: ReleasePolicy

    @model_validator(mode="after")
    def _forced_with_a_reason(self) -> ReleaseOrder:
        if self.policy.force_promote and not (self.request.force_reason or "").strip():
            raise ValueError(
                f"{names.FORCE_PROMOTE} overrides the gate only with a written reason: give "
                f"{names.FORCE_REASON} (why this version is released although the gate may refuse it)"
            )
        return self
