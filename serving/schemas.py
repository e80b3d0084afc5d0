"""Request bodies, validated with pydantic; a failure becomes a 422 whose message names the field."""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, model_validator

from serving.bodies import load_json_object
from serving.errors import ApiError
from serving.feedback import LABEL_MAX_CHARS, PREDICTION_ID_MAX_CHARS, VERSION_MAX_CHARS

T = TypeVar("T", bound=BaseModel)


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
    alias: Annotated[StrictStr, Field(max_length=VERSION_MAX_CHARS)] | None = None

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


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_body(model: type[T]) -> T:
    """The JSON body as ``model``: 415 without a JSON content type, 400 for bytes that are not a sane JSON
    object (``serving.bodies``), 422 for a wrong shape."""
    data = load_json_object()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, _describe(exc), error="invalid_request") from exc
