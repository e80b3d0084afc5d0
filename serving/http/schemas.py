"""Request bodies and JSON responses of the API as pydantic models: they validate and they feed the OpenAPI.

``serving.http.bodies.parse_body(Model)`` turns a request body into one of these (422 naming the field
otherwise); query strings have their models in ``serving.http.queries``.

``GET /replicas`` builds its answer through its models (``dump``), so the document describes exactly what is
sent: the public models keep what a client needs to see a release converge (versions, states, counts); host
names, load errors and registry errors name internals and go only to the admin token (the detail models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from serving.store.db import (
    LABEL_MAX_CHARS,
    MAX_ROW_ID,
    PREDICTION_ID_MAX_CHARS,
    REVIEWER_MAX_CHARS,
    VERSION_MAX_CHARS,
)

#: Python's whitespace (what ``str.strip`` removes), spelled out instead of ``\s``, whose meaning differs
#: between regex dialects (Python, ECMA, Rust): the class reads alike in all of them.
_SPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: No NUL character: ``serving.http.bodies`` refuses one in any string (SQLite and tokenizers cannot take it).
NO_NUL = r"^[^\x00]*$"
#: A text: no NUL, and at least one character ``str.strip`` keeps (the views refuse a blank text).
TEXT_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
#: Default limits of a text and of a list; ``apply_limits`` writes the configured ones into the document.
DEFAULT_MAX_TEXTS = 256
DEFAULT_MAX_TEXT_CHARS = 10_000

#: A text the views check themselves (their messages name the text's index): the schema only describes it.
Text = Annotated[
    StrictStr,
    Field(json_schema_extra={"minLength": 1, "maxLength": DEFAULT_MAX_TEXT_CHARS, "pattern": TEXT_PATTERN}),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Keys whose explicit ``null`` is refused (422), as the document says: absent is the only no.
    no_null: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        nulls = [
            name for name in cls.no_null if isinstance(data, dict) and name in data and data[name] is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(repr(n) for n in nulls)}: leave the key out instead of null")
        return data


def _exactly_one(*names: str) -> Callable[[dict[str, Any]], None]:
    """The document's form of "exactly one of these keys" (the models' ``_one_of`` validators); their
    ``default: null`` goes too, since null is not a value the document allows for them."""

    def edit(schema: dict[str, Any]) -> None:
        schema["oneOf"] = [{"required": [name]} for name in names]
        for name in names:
            schema["properties"][name].pop("default", None)

    return edit


class PredictRequest(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one("text", "texts"))
    no_null = ("text", "texts")

    text: Text | SkipJsonSchema[None] = None
    texts: (
        Annotated[list[Text], Field(json_schema_extra={"minItems": 1, "maxItems": DEFAULT_MAX_TEXTS})]
        | SkipJsonSchema[None]
    ) = None

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


#: Registry version numbers as strings: ASCII digits only (``str.isdigit`` would take "²" and "٣"), at most
#: nine (MLflow keeps versions as 32-bit integers and answers a 500 for larger ones).
VERSION_DIGITS = "^[0-9]{1,9}$"
MAX_VERSION = 999_999_999


def _integral(value: Any) -> Any:
    """``7.0`` is the integer 7 in JSON (and in the document's ``integer``): take it as one."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value


#: Who asked for a release, and why a gate was overridden: free text the run's conf and logs carry.
REQUESTED_BY_MAX_CHARS = 128
FORCE_REASON_MAX_CHARS = 2000


def _force_needs_a_reason(schema: dict[str, Any]) -> None:
    """The document's form of ``_reason_with_force``: ``force_promote: true`` requires ``force_reason``."""
    schema["if"] = {"properties": {"force_promote": {"const": True}}, "required": ["force_promote"]}
    schema["then"] = {"required": ["force_reason"]}


class DeployRequest(_Body):
    """A manual release: one registered version through the pipeline's gate, promote, deploy and check.

    The field names are the release DAG's conf keys (``sentiflow.names``: ``RELEASE_VERSION``,
    ``RELEASE_REQUESTED_BY``, ``FORCE_PROMOTE``, ``FORCE_REASON``).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_force_needs_a_reason)
    no_null = ("version", "requested_by", "force_promote", "force_reason")

    version: (
        Annotated[StrictStr, Field(pattern=VERSION_DIGITS)]
        | Annotated[int, Field(ge=0, le=MAX_VERSION, strict=True), BeforeValidator(_integral)]
    ) = Field(description='The registered version to release, e.g. "7".')
    requested_by: Annotated[
        StrictStr, Field(min_length=1, max_length=REQUESTED_BY_MAX_CHARS, pattern=TEXT_PATTERN)
    ] = Field(description="Who asks: recorded in the run's conf, its logs and on the version.")
    force_promote: StrictBool = Field(
        default=False, description="Release even when the gate refuses the version (needs force_reason)."
    )
    force_reason: (
        Annotated[StrictStr, Field(min_length=1, max_length=FORCE_REASON_MAX_CHARS, pattern=TEXT_PATTERN)]
        | SkipJsonSchema[None]
    ) = Field(default=None, description="Why the gate is overridden: required with force_promote.")

    @model_validator(mode="after")
    def _reason_with_force(self) -> DeployRequest:
        if self.force_promote and self.force_reason is None:
            raise ValueError("force_promote needs a written force_reason: why the gate is overridden")
        return self


class ReleaseRunStatus(BaseModel):
    """A run of the release DAG in Airflow (``POST /deploy``, ``GET /deploy/status``)."""

    dag_run_id: str = Field(description="The run's id in Airflow: what /deploy/status?id= takes.")
    dag_id: str
    state: str = Field(
        description="Airflow's run state (queued, running, success, failed; the last two final)."
    )
    airflow_url: str = Field(description="The run's page in Airflow's UI: its tasks, logs and links.")
    version: str | None = Field(default=None, description="The version the run releases (its conf).")
    requested_by: str | None = None
    failed_tasks: list[str] = Field(
        default_factory=list, description="Ids of the tasks that failed, once the run failed."
    )
    gate_reason: str | None = Field(
        default=None,
        description="Once the run ended: the gate's reason for releasing or refusing the version.",
    )
    message: str | None = None


def _column(max_chars: int) -> Any:
    """A string of a feedback table's column: its length, so the database never sees a value it would
    truncate or refuse, and no NUL (``serving.http.bodies`` refuses one; the document says so)."""
    return Field(min_length=1, max_length=max_chars, json_schema_extra={"pattern": NO_NUL})


Label = Annotated[StrictStr, _column(LABEL_MAX_CHARS)]
Version = (
    Annotated[StrictStr, _column(VERSION_MAX_CHARS)]
    | Annotated[int, Field(ge=0, strict=True), BeforeValidator(_integral)]
)


class FeedbackRequest(_Body):
    """A judgement of one prediction; ``prediction_id`` is the signed id ``/predict`` gave for the text."""

    prediction_id: Annotated[StrictStr, _column(PREDICTION_ID_MAX_CHARS)]
    text: Text
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
    run_id: str | None = Field(default=None, description="The version's run (admin token only).")
    family: str
    label_names: list[str]
    metrics: dict[str, float]
    loaded_at: str
    source: str | None = Field(
        default=None, description="Where the files were loaded from (admin token only)."
    )
    model_id: str | None = Field(
        default=None, description="The logged model the version was made from (admin token only)."
    )
    runtime: str
    runtime_source: Literal["shipped", "built"] | None = Field(
        default=None,
        description="An ONNX runtime's file: shipped with the version (built and checked by the pipeline) "
        "or built by this replica (a version that ships none).",
    )
    runtime_fallback: str | None = Field(
        default=None,
        description="Why the configured runtime (SENTIFLOW_SERVER_RUNTIME) does not serve this version and "
        "PyTorch does; null when it serves.",
    )
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
    prediction_id: str | None = Field(description="The judged prediction's signed id (canonical form).")
    client: str | None = Field(default=None, description="The client address that sent it.")
    status: Literal["pending", "accepted", "corrected", "rejected"] = Field(
        description="Review status: only accepted and corrected rows train."
    )
    review_label: str | None = Field(default=None, description="The reviewer's label of a corrected row.")
    reviewed_by: str | None = None
    reviewed_at: str | None = None


#: Who reviews: recorded with each decision.
Reviewer = Annotated[StrictStr, Field(min_length=1, max_length=REVIEWER_MAX_CHARS, pattern=TEXT_PATTERN)]


class ReviewRequest(_Body):
    """One decision on one row: accept the user's label, correct it (``label``), or reject the row."""

    decision: Literal["accept", "correct", "reject"]
    reviewer: Reviewer
    label: Label | None = Field(default=None, description="The label to train with; required by correct.")

    @model_validator(mode="after")
    def _label_with_correct(self) -> ReviewRequest:
        if self.decision == "correct" and self.label is None:
            raise ValueError("decision 'correct' needs 'label': the label the row should train with")
        return self


class ReviewFilterBody(_Body):
    """Which rows a bulk decision covers: every given field must match; at least one must be given."""

    status: Literal["pending", "accepted", "corrected", "rejected"] = "pending"
    label: Label | None = Field(default=None, description="The label the row claims is right.")
    predicted_label: Label | None = None
    model_version: Version | None = None
    client: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    since: AwareDatetime | None = Field(default=None, description="Sent at or after.")
    until: AwareDatetime | None = Field(default=None, description="Sent before.")
    text_contains: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    ids: (
        Annotated[
            list[Annotated[int, Field(ge=1, le=MAX_ROW_ID, strict=True)]],
            Field(min_length=1, max_length=10_000),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _narrowed(self) -> ReviewFilterBody:
        if not self.model_fields_set - {"status"}:
            raise ValueError("give at least one criterion besides status (label, client, ids, ...)")
        return self


class BulkReviewRequest(ReviewRequest):
    """One decision on every row the filter covers."""

    filter: ReviewFilterBody


class ReviewDecisionOut(BaseModel):
    """What a bulk decision did."""

    review_id: int | None = Field(description="The decision's id (null when no row changed).")
    changed: int = Field(description="Rows whose status changed (rows already so are left as they are).")


class FeedbackPage(BaseModel):
    """Rows of the review queue, oldest first, and how many match in all."""

    total: int
    rows: list[FeedbackRecordOut]


class ImportLine(BaseModel):
    line: int
    id: int | None
    outcome: Literal["decided", "unchanged", "unknown_id", "error"]
    message: str | None = None


class ImportResult(BaseModel):
    """One outcome per imported line; the lines that could apply did, whatever the others."""

    decided: int
    unchanged: int
    failed: int
    lines: list[ImportLine]


WorkerState = Literal["serving", "loading", "failed", "unready"]
ReplicaState = Literal["serving", "loading", "failed", "unready", "mixed"]


class WorkerInfo(BaseModel):
    worker_id: str = Field(description="The worker's process id within its replica.")
    version: str | None = Field(description="Version this worker serves; null before its first load.")
    state: WorkerState
    runtime: str | None = None
    family: str | None = None
    loaded_at: str | None = Field(default=None, description="When the served version was loaded (ISO 8601).")
    last_seen: float = Field(description="Last heartbeat, UNIX seconds.")
    target_version: str | None = Field(
        default=None, description="The alias's version as this worker read it."
    )
    error_version: str | None = Field(default=None, description="The version whose last load failed.")
    error_at: float | None = Field(default=None, description="When the last load failed, UNIX seconds.")
    staged_version: str | None = Field(
        default=None, description="The release's candidate this worker holds loaded and verified, not served."
    )
    staging_error_version: str | None = Field(
        default=None, description="The candidate whose last staging failed."
    )


class WorkerDetail(WorkerInfo):
    load_error: str | None = Field(default=None, description="The last failed load, until one succeeds.")
    staging_error: str | None = Field(default=None, description="Why staging the candidate last failed.")


class ReplicaInfo(BaseModel):
    replica_id: str
    version: str | None = Field(description="The version every live worker serves; null while they differ.")
    state: ReplicaState
    runtime: str | list[str] | None = None
    loaded_at: str | None = None
    last_seen: float | None = None
    alias: str = Field(description="The alias this replica follows.")
    alias_version: str | None = Field(description="The alias's version at this replica's last registry read.")
    candidate_version: str | None = Field(
        default=None, description="The candidate alias's version at this replica's last registry read."
    )
    staged_version: str | None = Field(
        default=None, description="The candidate every live worker holds staged; null while they differ."
    )
    started_at: float
    workers: list[WorkerInfo]


class ReplicaDetail(ReplicaInfo):
    host: str
    load_error: str | None = None
    alias_error: str | None = Field(default=None, description="Why the last registry read failed, if it did.")
    staging_error: str | None = Field(default=None, description="A worker's last failed staging, if any.")
    workers: list[WorkerDetail]  # type: ignore[assignment]  # the detail of each worker too


class ReplicasResponse(BaseModel):
    """Without the admin token: versions, states and counts only."""

    alias: str
    alias_version: str | None = Field(description="The alias's version as the latest replica read found it.")
    live_window_s: float = Field(description="A replica not seen for this long is not listed.")
    replicas: list[ReplicaInfo]


class ReplicasDetail(ReplicasResponse):
    """With the admin token: each replica's host, load errors and registry errors too."""

    replicas: list[ReplicaDetail]  # type: ignore[assignment]


def dump(model: type[BaseModel], data: dict) -> dict:
    """``data`` checked against ``model`` and serialised as JSON-ready values (fields ``model`` does not
    name are left out)."""
    return model.model_validate(data).model_dump(mode="json")


def apply_limits(schemas: dict[str, Any], *, max_texts: int, max_text_chars: int) -> None:
    """Write the server's configured limits (``SENTIFLOW_SERVER_MAX_TEXTS``, ``_MAX_TEXT_CHARS``) into the
    document's request schemas, so ``/openapi.json`` states the limits this server enforces."""
    predict = schemas["PredictRequest"]["properties"]
    predict["texts"]["maxItems"] = max_texts
    for text in (
        predict["text"],
        predict["texts"]["items"],
        schemas["FeedbackRequest"]["properties"]["text"],
    ):
        text["maxLength"] = max_text_chars
