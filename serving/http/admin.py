"""Admin blueprint: the live replicas, feedback export (token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from serving.extension import ServerExtension, server
from serving.http.auth import require_admin
from serving.http.openapi import ErrorBody, document
from serving.http.queries import ExportQuery, parse_query
from serving.http.replica_schemas import ReplicasResponse, dump
from serving.store.replicas import ReplicaView

bp = Blueprint("admin", __name__)


@bp.get("/replicas")
@document(
    summary="The live replicas: what each serves, its workers and load errors",
    responses={200: ReplicasResponse},
)
def replicas():
    """The live replicas (seen within ``replica_ttl_s``): what each serves, its workers and load errors."""
    return jsonify(dump(ReplicasResponse, replicas_json(server())))


def _alias_version(replicas: list[ReplicaView]) -> str | None:
    """The followed alias's version as the most recent replica read found it."""
    read = [r for r in replicas if r.alias_read_at is not None and r.alias_error is None]
    return max(read, key=lambda r: r.alias_read_at or 0.0).alias_version if read else None


def replicas_json(ext: ServerExtension) -> dict[str, Any]:
    """``GET /replicas``: the followed alias and every live replica, as the shared database reports them."""
    live = ext.replicas.live(ext.settings.replica_ttl_s)
    return {
        "alias": ext.alias,
        "alias_version": _alias_version(live),
        "live_window_s": ext.settings.replica_ttl_s,
        "replicas": [r.as_json() for r in live],
    }


@bp.after_app_request
def _name_the_replica(response: Response) -> Response:
    """``X-Sentiflow-Replica`` on every answer: which replica (pod) behind the Service answered."""
    response.headers["X-Sentiflow-Replica"] = server().replica_id
    return response


@bp.get("/feedback/export")
@document(
    summary="Export stored feedback (admin token)",
    query=ExportQuery,
    responses={
        200: (("text/csv", "application/vnd.apache.parquet"), "The rows, as a file"),
        400: ErrorBody,
        401: ErrorBody,
    },
)
@require_admin
def feedback_export():
    query = parse_query(ExportQuery)
    fmt = query.format
    payload = server().feedback.export(fmt, since_id=query.since_id, limit=query.limit)
    mimetype = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
    return Response(
        payload,
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename=feedback.{fmt}"},
    )
