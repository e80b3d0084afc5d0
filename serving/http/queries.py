"""Query strings as pydantic models: one parser, ``parse_query(Model)``, the twin of ``parse_body``.

The model a route passes to ``@document(query=...)`` is the one its view parses with, so ``/openapi.json``
describes exactly what is accepted (schemathesis checks both ways: what the document allows is accepted,
what it does not is refused). So a parameter sent empty (``?limit=``) is a 400, not "absent": the document
types it as a number; leave it out for the default. Flags are exactly ``true`` or ``false`` (the document's
boolean). The first value of a repeated parameter counts; unknown ones are ignored. A value that does not fit
is a 400 whose message names the parameter, before any store or registry sees it; numbers are bounded in the
document and here alike (SQLite and float conversions have limits of their own, and a 5,000-digit integer
must not reach Python's ``int``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from flask import request
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field, ValidationError

from serving.http.errors import ApiError

Q = TypeVar("Q", bound=BaseModel)

#: Query numbers at or beyond this are refused (the document's ``exclusiveMaximum``).
MAX_QUERY_NUMBER = 2**31
#: Days the web page's feedback chart may span.
MAX_DAYS = 366


def _at_most(chars: int) -> BeforeValidator:
    """Refuse a long literal before it is converted (a 5,000-digit integer); no value the document allows is
    that long."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > chars:
            raise ValueError(f"at most {chars} characters")
        return value

    return BeforeValidator(check)


def _flag(value: Any) -> Any:
    """``true`` or ``false``, the document's boolean as a query string writes it; anything else is refused."""
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("use true or false")


#: A non-negative integer of the query (an id, a count), below ``MAX_QUERY_NUMBER``.
QueryInt = Annotated[int, Field(ge=0, lt=MAX_QUERY_NUMBER), _at_most(12)]
#: Seconds: a finite number >= 0 below ``MAX_QUERY_NUMBER`` (NaN and infinities compare false: refused).
QuerySeconds = Annotated[float, Field(ge=0, lt=MAX_QUERY_NUMBER), _at_most(32)]


def parse_query(model: type[Q]) -> Q:
    """The query string as ``model``: 400 naming the parameter for a value that does not fit."""
    data = {name: request.args[name] for name in model.model_fields if name in request.args}
    empty = [name for name, value in data.items() if value == ""]
    if empty:
        raise ApiError(
            400, "; ".join(f"query parameter {name!r}: empty; leave it out for the default" for name in empty)
        )
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
        default=False, description="Answer when the release run ended (or the wait timed out)."
    )
    timeout: QuerySeconds | None = Field(
        default=None, description="Seconds to wait; capped by SENTIFLOW_SERVER_DEPLOY_TIMEOUT_S."
    )


class DeployStatusQuery(BaseModel):
    id: str = Field(min_length=1, max_length=250, description="The release run's id (dag_run_id).")


#: A short filter value (a label, a version, a client address, a piece of text).
QueryText = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]


class FeedbackFilterQuery(BaseModel):
    """Which feedback rows: every given parameter must match (``serving.store.feedback.ReviewFilter``)."""

    status: Literal["pending", "accepted", "corrected", "rejected", "trainable", "all"] = Field(
        default="pending", description="Review status; trainable = accepted or corrected."
    )
    label: QueryText | None = Field(default=None, description="The label the row claims is right.")
    predicted_label: QueryText | None = None
    model_version: QueryText | None = None
    client: QueryText | None = Field(default=None, description="The client address that sent it.")
    since: Annotated[AwareDatetime, _at_most(40)] | None = Field(
        default=None, description="Sent at or after (ISO 8601 with a time zone)."
    )
    until: Annotated[AwareDatetime, _at_most(40)] | None = Field(
        default=None, description="Sent before (ISO 8601 with a time zone)."
    )
    text_contains: QueryText | None = Field(default=None, description="Case-insensitive piece of the text.")


class ReviewListQuery(FeedbackFilterQuery):
    limit: int = Field(default=100, ge=1, le=1000, description="At most this many rows.")
    offset: QueryInt = 0


class ExportQuery(FeedbackFilterQuery):
    status: Literal["pending", "accepted", "corrected", "rejected", "trainable", "all"] = Field(
        default="all", description="Review status; trainable = accepted or corrected."
    )
    format: Literal["csv", "parquet", "jsonl"] = "csv"
    since_id: QueryInt = Field(default=0, description="Only rows with a larger id.")
    since_review: QueryInt | None = Field(
        default=None,
        description="Only rows decided after this review (their review_seq is larger), in decision order: "
        "the training export's watermark.",
    )
    limit: QueryInt | None = Field(default=None, description="At most this many rows.")


class ImportQuery(BaseModel):
    reviewer: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]*\S[^\x00]*$")] = Field(
        description="Who decided: recorded with each decision."
    )


class DailyFeedbackQuery(BaseModel):
    """``GET /ui/api/feedback/daily`` (the web page's chart)."""

    days: Annotated[int, _at_most(12)] = Field(
        default=14, ge=1, le=MAX_DAYS, description="Days up to today, today included."
    )
