"""Request bodies, validated with pydantic; a failure becomes a 422 whose message names the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError, model_validator

from serving.errors import ApiError

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
    version: StrictStr | int | None = None
    alias: StrictStr | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DeployRequest:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' (e.g. \"7\") or 'alias' (e.g. \"champion\")")
        if self.version is not None and not str(self.version).isdigit():
            raise ValueError(f"'version' must be a registry version number, got {self.version!r}")
        if self.alias is not None and not self.alias.strip():
            raise ValueError("'alias' must not be empty")
        return self


class FeedbackRequest(_Body):
    text: StrictStr
    predicted_label: StrictStr
    correct: StrictBool
    true_label: StrictStr | None = None
    model_version: StrictStr | int | None = None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_body(model: type[T]) -> T:
    """The JSON body as ``model``: 400 for bytes that are not a JSON object, 422 for a wrong shape."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, "empty body: send a JSON object")
    try:
        data: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}", error="malformed_json") from exc
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, _describe(exc), error="invalid_request") from exc
