"""Query strings as pydantic models: one parser, ``parse_query(Model)``, the twin of ``parse_body``.

The model a route passes to ``@document(query=...)`` is the one its view parses with, so ``/openapi.json``
describes exactly what is accepted. A parameter sent empty (``?limit=``) counts as absent; the first value
of a repeated one counts; unknown ones are ignored. A value that does not fit is a 400 whose message names the
parameter, before any store or registry sees it; numbers are bounded (SQLite and float conversions have
limits of their own, and a 5,000-digit integer must not reach Python's ``int``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from flask import request
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError

from serving.http.errors import ApiError

Q = TypeVar("Q", bound=BaseModel)

#: Query numbers at or beyond this are refused.
MAX_QUERY_NUMBER = 2**31
#: What ``?wait=`` accepts as yes; any other value is no.
TRUE = frozenset({"1", "true", "yes", "on"})
#: Days the web page's feedback chart may span.
MAX_DAYS = 366


def _at_most(chars: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > chars:
            raise ValueError(f"at most {chars} characters")
        return value

    return BeforeValidator(check)


def _below_limit(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value < MAX_QUERY_NUMBER):
        raise ValueError(f"must be a finite number below {MAX_QUERY_NUMBER}")
    return value


def _flag(value: Any) -> bool:
    return str(value).lower() in TRUE


#: A non-negative integer of the query (an id, a count): at most 12 digits and below ``MAX_QUERY_NUMBER``.
QueryInt = Annotated[int, Field(ge=0), _at_most(12), AfterValidator(_below_limit)]
#: Seconds: a finite number >= 0, at most 32 characters, below ``MAX_QUERY_NUMBER``.
QuerySeconds = Annotated[float, Field(ge=0), _at_most(32), AfterValidator(_below_limit)]


def parse_query(model: type[Q]) -> Q:
    """The query string as ``model``: 400 naming the parameter for a value that does not fit."""
    data = {name: request.args[name] for name in model.model_fields if request.args.get(name, "") != ""}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            (str(err["loc"][0]) if err["loc"] else "query", err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ]
        raise ApiError(400, "; ".join(f"query parameter {name!r}: {msg}" for name, msg in problems)) from exc


class DeployQuery(BaseModel):
    wait: Annotated[bool, BeforeValidator(_flag)] = Field(
        default=False, description="Answer when the deploy finished (or timed out)."
    )
    timeout: QuerySeconds | None = Field(default=None, description="Seconds to wait; capped by the server.")


class DeployStatusQuery(BaseModel):
    id: str | None = Field(default=None, description="A deployment id; default the latest deployment.")


class ExportQuery(BaseModel):
    format: Annotated[Literal["csv", "parquet"], BeforeValidator(lambda v: str(v).lower())] = "csv"
    since_id: QueryInt = Field(default=0, description="Only rows with a larger id.")
    limit: QueryInt | None = Field(default=None, description="At most this many rows.")


class DailyFeedbackQuery(BaseModel):
    """``GET /ui/api/feedback/daily`` (the web page's chart)."""

    days: Annotated[int, _at_most(12)] = Field(
        default=14, ge=1, le=MAX_DAYS, description="Days up to today, today included."
    )
