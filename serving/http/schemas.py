"""Request bodies and JSON responses of the API as pydantic models: they validate and they feed the OpenAPI.

``serving.http.bodies.parse_body(Model)`` turns a request body into one of these (422 naming the field
otherwise); query strings have their models in ``serving.http.queries``; the replica and deployment responses
are ``serving.http.replica_schemas``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

from serving.store.db import LABEL_MAX_CHARS, PREDICTION_ID_MAX_CHARS, VERSION_MAX_CHARS


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Body):
    text: StrictStr | None = None
    texts: list[StrictStr] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class DeployRequest(_Body):
    version: Version | None = None
    #: MLflow's alias names: letters, digits, ``_`` and ``-`` (anything else the registry refuses).
    alias: Annotated[StrictStr, Field(max_length=VERSION_MAX_CHARS, pattern=r"^[A-Za-z0-9_-]+$")] | None = (
        None
    )

    @model_validator(mode="after")
    def _one_of(self) -> DeployRequest:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' (e.g. \"7\") or 'alias' (e.g. \"champion\")")
        if self.version is not None and not str(self.version).isdigit():
            raise ValueError(f"'version' must be a registry version number, got {self.version!r}")
        if self.alias is not None and not self.alias.strip():
            raise ValueError("'alias' must not be empty")
        return self


#: Lengths match the feedback table's columns, so the database never sees a value it would truncate or refuse.
Label = Annotated[StrictStr, Field(min_length=1, max_length=LABEL_MAX_CHARS)]
Version = (
    Annotated[StrictStr, Field(min_length=1, max_length=VERSION_MAX_CHARS)] | Annotated[int, Field(ge=0)]
)


class FeedbackRequest(_Body):
    """A judgement of one prediction; ``prediction_id`` is the signed id ``/predict`` gave for the text."""

    prediction_id: Annotated[StrictStr, Field(min_length=1, max_length=PREDICTION_ID_MAX_CHARS)]
    text: StrictStr
    correct: StrictBool
    predicted_label: Label | None = None
    true_label: Label | None = None
    model_version: Version | None = None


# --- responses (documentation in /openapi.json, and the shape tests validate) --------------------------
class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether a model is loaded (200) or why not (503)."""

    ready: bool
    model_version: str | None = None
    reason: str | None = None


class PredictionOut(BaseModel):
    label: str
    label_id: int
    scores: dict[str, float]
    prediction_id: str = Field(description="Signed id of this prediction; POST /feedback must cite it.")


class PredictResponse(BaseModel):
    """One prediction per text, in order, and the exact model version that made them."""

    model_version: str
    model_name: str
    predictions: list[PredictionOut]


class ModelInfo(BaseModel):
    """The model this worker serves."""

    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    run_id: str | None
    family: str
    label_names: list[str]
    metrics: dict[str, float]
    loaded_at: str
    source: str
    runtime: str
    deployed: dict[str, Any] | None


class FeedbackRecordOut(BaseModel):
    """The stored feedback row."""

    id: int
    created_at: str
    text: str
    predicted_label: str
    correct: bool
    true_label: str | None
    model_version: str | None
    verified: bool
