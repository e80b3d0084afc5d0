"""Admin blueprint (bearer token): deploy a registry version, follow deployments, export feedback."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from serving.auth import require_admin
from serving.errors import ApiError
from serving.feedback import EXPORT_FORMATS
from serving.model_manager import ModelNotFoundError, RegistryUnavailableError
from serving.openapi import ErrorBody, document
from serving.schemas import (
    Deployment,
    DeploymentStatus,
    DeployQuery,
    DeployRequest,
    DeployStatusQuery,
    ExportQuery,
    parse_body,
)

bp = Blueprint("admin", __name__)

TRUE = {"1", "true", "yes", "on"}


def _server():
    return current_app.extensions["sentiflow"]


#: Query numbers beyond this are refused (SQLite and float conversions have limits of their own).
MAX_QUERY_NUMBER = 2**31


def _int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if len(raw) <= 12 else None
    except ValueError:
        value = None
    if value is None or not 0 <= value < MAX_QUERY_NUMBER:
        raise ApiError(400, f"query parameter {name!r} must be an integer 0..{MAX_QUERY_NUMBER - 1}")
    return value


def _timeout_arg(default: float) -> float:
    raw = request.args.get("timeout")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw) if len(raw) <= 32 else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 <= value < MAX_QUERY_NUMBER:  # also refuses nan and inf
        raise ApiError(400, "query parameter 'timeout' must be a number of seconds >= 0")
    return value


@bp.post("/deploy")
@document(
    summary="Deploy a registry version or alias (admin token)",
    body=DeployRequest,
    query=DeployQuery,
    responses={
        200: Deployment,
        202: Deployment,
        401: ErrorBody,
        404: ErrorBody,
        422: [ErrorBody, Deployment],
        503: ErrorBody,
    },
)
@require_admin
def deploy():
    server = _server()
    body = parse_body(DeployRequest)
    wait = request.args.get("wait", "").lower() in TRUE
    timeout = _timeout_arg(server.settings.deploy_timeout_s)  # a bad one is a 400 before anything moves
    try:
        record = server.manager.deploy(
            version=None if body.version is None else str(body.version), alias=body.alias
        )
    except ModelNotFoundError as exc:
        raise ApiError(404, str(exc), error="model_not_found") from exc
    except RegistryUnavailableError as exc:
        raise ApiError(503, str(exc), error="registry_unavailable") from exc
    if not wait:
        return jsonify(record), 202
    record = server.manager.wait(record["id"], timeout_s=min(timeout, server.settings.deploy_timeout_s))
    if record.get("status") == "failed":
        return jsonify({**record, "message": f"deployment failed, old model kept: {record['error']}"}), 422
    if record.get("timed_out"):
        return jsonify({**record, "message": "deployment still in progress; poll /deploy/status"}), 202
    return jsonify(record), 200


@bp.get("/deploy/status")
@document(
    summary="A deployment's status and what each worker serves",
    query=DeployStatusQuery,
    responses={200: DeploymentStatus, 404: ErrorBody},
)
def deploy_status():
    """Readable without a token: it reveals versions and errors, never data."""
    state = _server().manager.state
    deployment_id = request.args.get("id")
    record = state.read_deployment(deployment_id) if deployment_id else state.latest_deployment()
    if record is None:
        what = f"deployment {deployment_id!r}" if deployment_id else "any deployment"
        raise ApiError(404, f"no record of {what}", error="deployment_not_found")
    return jsonify({**record, "workers": {str(p): v for p, v in state.live_worker_versions().items()}})


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
    fmt = request.args.get("format", "csv").lower()
    if fmt not in EXPORT_FORMATS:
        raise ApiError(400, f"unknown format {fmt!r}; use one of {list(EXPORT_FORMATS)}")
    payload = _server().feedback.export(
        fmt, since_id=_int_arg("since_id", 0) or 0, limit=_int_arg("limit", None)
    )
    mimetype = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
    return Response(
        payload,
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename=feedback.{fmt}"},
    )
