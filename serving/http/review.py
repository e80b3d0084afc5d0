"""Review blueprint (reviewer token): the feedback review queue, its export and import for labelling tools.

Posted feedback waits ``pending`` (``serving.store.feedback``); a reviewer lists it, accepts, corrects or
rejects one row or every row a filter covers, and only accepted and corrected rows train. Labelling tools
take the pending rows as JSONL or CSV (``GET /feedback/export?status=pending&format=jsonl``) and hand the
decisions back (``POST /feedback/import``): one line per row with ``id``, ``decision`` and ``label``; a line
that cannot apply is reported and the others still apply, and importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from serving.extension import server
from serving.http.auth import require_reviewer
from serving.http.bodies import check_tree, json_object, parse_body
from serving.http.errors import ApiError
from serving.http.openapi import ErrorBody, document
from serving.http.queries import ExportQuery, FeedbackFilterQuery, ImportQuery, ReviewListQuery, parse_query
from serving.http.schemas import (
    BulkReviewRequest,
    FeedbackPage,
    FeedbackRecordOut,
    ImportResult,
    ReviewDecisionOut,
    ReviewFilterBody,
    ReviewRequest,
)
from serving.store.feedback import ReviewFilter

bp = Blueprint("review", __name__)

EXPORT_MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet", "jsonl": "application/jsonl"}
IMPORT_MEDIA = ("text/csv", "application/jsonl", "application/x-ndjson")


def _utc(moment: datetime | None) -> datetime | None:
    """The store compares in UTC (SQLite keeps the stored times' digits, not their zone)."""
    return None if moment is None else moment.astimezone(UTC)


def _filter(query: FeedbackFilterQuery | ReviewFilterBody) -> ReviewFilter:
    status = getattr(query, "status", "pending")
    return ReviewFilter(
        status=None if status == "all" else status,
        label=query.label,
        predicted_label=query.predicted_label,
        model_version=None if query.model_version is None else str(query.model_version),
        client=query.client,
        since=_utc(query.since),
        until=_utc(query.until),
        text_contains=query.text_contains,
        ids=tuple(query.ids) if isinstance(query, ReviewFilterBody) and query.ids else None,
    )


def _check_label(label: str | None) -> None:
    """A correction's label must be one a model can learn: one of the labels the stored rows use."""
    if label is None:
        return
    known = server().feedback.labels()
    if known and label not in known:
        raise ApiError(
            422, f"label: {label[:40]!r} is not one of the feedback's labels {known}", error="unknown_label"
        )


@bp.get("/feedback/review")
@document(
    summary="The review queue: feedback rows by filter, oldest first (reviewer token)",
    query=ReviewListQuery,
    responses={200: FeedbackPage, 400: ErrorBody, 401: ErrorBody},
)
@require_reviewer
def review_queue() -> ResponseReturnValue:
    query = parse_query(ReviewListQuery)
    where = _filter(query)
    store = server().feedback
    rows = store.rows(where, limit=query.limit, offset=query.offset)
    return jsonify(total=store.count_where(where), rows=[r.to_json() for r in rows])


@bp.post("/feedback/<int(max=2147483647):row_id>/review")
@document(
    summary="Accept, correct or reject one feedback row (reviewer token)",
    body=ReviewRequest,
    responses={
        200: FeedbackRecordOut,
        400: ErrorBody,
        401: ErrorBody,
        404: ErrorBody,
        415: ErrorBody,
        422: ErrorBody,
    },
)
@require_reviewer
def review_one(row_id: int) -> ResponseReturnValue:
    body = parse_body(ReviewRequest)
    store = server().feedback
    if store.get(row_id) is None:
        raise ApiError(404, f"no feedback row {row_id}", error="unknown_feedback")
    _check_label(body.label)
    store.decide(
        ReviewFilter(status=None, ids=(row_id,)), body.decision, reviewer=body.reviewer, label=body.label
    )
    record = store.get(row_id)
    return jsonify(record.to_json() if record else {})


@bp.post("/feedback/review")
@document(
    summary="Accept, correct or reject every feedback row a filter covers (reviewer token)",
    body=BulkReviewRequest,
    responses={200: ReviewDecisionOut, 400: ErrorBody, 401: ErrorBody, 415: ErrorBody, 422: ErrorBody},
)
@require_reviewer
def review_bulk() -> ResponseReturnValue:
    body = parse_body(BulkReviewRequest)
    _check_label(body.label)
    review_id, changed = server().feedback.decide(
        _filter(body.filter), body.decision, reviewer=body.reviewer, label=body.label
    )
    return jsonify(review_id=review_id or None, changed=changed)


@bp.get("/feedback/export")
@document(
    summary="Export feedback rows by filter: CSV, JSONL or parquet (reviewer token)",
    description="Every row by default (`status=all`); `status=pending&format=jsonl` is a labelling tool's "
    "input, `status=trainable&since_review=N` the pipeline's training export. Columns: the stored row, "
    "`review_seq` (the decision's id), `reviewed_by`, `reviewed_at`.",
    query=ExportQuery,
    responses={
        200: (tuple(EXPORT_MEDIA.values()), "The rows, as a file"),
        400: ErrorBody,
        401: ErrorBody,
    },
)
@require_reviewer
def feedback_export() -> ResponseReturnValue:
    query = parse_query(ExportQuery)
    fmt = query.format
    payload = server().feedback.export(
        fmt, since_id=query.since_id, limit=query.limit, where=_filter(query), since_review=query.since_review
    )
    return Response(
        payload,
        mimetype=EXPORT_MEDIA[fmt],
        headers={"Content-Disposition": f"attachment; filename=feedback.{fmt}"},
    )


def _import_lines() -> list[dict[str, Any]]:
    """The upload's decisions: CSV with a header row, or one JSON object per line; 4xx naming the line."""
    mimetype = request.mimetype or ""
    if mimetype not in IMPORT_MEDIA:
        raise ApiError(
            415,
            f"Content-Type must be one of {list(IMPORT_MEDIA)}, got {request.content_type or 'none'!r}",
            error="unsupported_media_type",
        )
    try:
        text = request.get_data(cache=True).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the upload is not UTF-8 text: {exc}", error="invalid_text") from None
    if not text.strip():
        raise ApiError(400, "empty upload: send one decision per line (id, decision, label)")
    if mimetype == "text/csv":
        reader = csv.DictReader(io.StringIO(text))
        try:
            missing = {"id", "decision"} - set(reader.fieldnames or [])
            if missing:
                raise ApiError(
                    400,
                    f"CSV header lacks {sorted(missing)}: it has {reader.fieldnames}; "
                    "need id, decision, label",
                    error="invalid_upload",
                )
            lines: list[dict[str, Any]] = [dict(row) for row in reader]
        except csv.Error as exc:
            raise ApiError(
                400, f"unreadable CSV at line {reader.line_num}: {exc}", error="invalid_upload"
            ) from None
        check_tree({"rows": lines})
        return lines
    return [
        json_object(line, f"line {n}") for n, line in enumerate(text.splitlines(), start=1) if line.strip()
    ]


@bp.post("/feedback/import")
@document(
    summary="Import decisions from a labelling tool: JSONL or CSV of id, decision, label (reviewer token)",
    description="`decision` is accept, correct (with `label`) or reject. Idempotent: a row already so "
    "decided is `unchanged`. An unknown id or a bad decision is reported on its line; the other lines "
    "apply. Content-Type text/csv (a header row) or application/jsonl.",
    query=ImportQuery,
    responses={200: ImportResult, 400: ErrorBody, 401: ErrorBody, 413: ErrorBody, 415: ErrorBody},
)
@require_reviewer
def feedback_import() -> ResponseReturnValue:
    reviewer = parse_query(ImportQuery).reviewer
    lines = _import_lines()
    outcomes = server().feedback.import_decisions(lines, reviewer=reviewer)
    counts = {k: sum(o.outcome == k for o in outcomes) for k in ("decided", "unchanged")}
    return jsonify(
        decided=counts["decided"],
        unchanged=counts["unchanged"],
        failed=len(outcomes) - counts["decided"] - counts["unchanged"],
        lines=[vars(o) for o in outcomes],
    )
