"""Admin blueprint: deploy (token; moves the alias), deployments and replicas, feedback export (token)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from sentiflow.mlflow_auth import DeployNotAllowedError
from sentiflow.registry import ModelNotFoundError, RegistryUnavailableError
from serving import deployments
from serving.auth import require_admin
from serving.errors import ApiError
from serving.feedback import EXPORT_FORMATS
from serving.openapi import ErrorBody, document
from serving.replica_schemas import DeploymentStatus, ReplicasResponse, dump
from serving.schemas import DeployQuery, DeployRequest, DeployStatusQuery, ExportQuery, parse_body

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
    summary="Move the followed alias to a registry version or alias (admin token)",
    body=DeployRequest,
    query=DeployQuery,
    responses={
        200: DeploymentStatus,
        202: DeploymentStatus,
        401: ErrorBody,
        403: ErrorBody,
        404: ErrorBody,
        422: [ErrorBody, DeploymentStatus],
        503: ErrorBody,
    },
)
@require_admin
def deploy():
    """Move the followed alias (old → ``previous``); ``?wait=true`` answers once every replica serves it."""
    server = _server()
    body = parse_body(DeployRequest)
    wait = request.args.get("wait", "").lower() in TRUE
    timeout = _timeout_arg(server.settings.deploy_timeout_s)  # a bad one is a 400 before anything moves
    try:
        record = deployments.release(
            server, version=None if body.version is None else str(body.version), alias=body.alias
        )
    except DeployNotAllowedError as exc:
        raise ApiError(403, str(exc), error="deploy_not_allowed") from exc
    except ModelNotFoundError as exc:
        raise ApiError(404, str(exc), error="model_not_found") from exc
    except RegistryUnavailableError as exc:
        raise ApiError(503, str(exc), error="registry_unavailable") from exc
    if not wait:
        return jsonify(dump(DeploymentStatus, deployments.view(server, record))), 202
    record = deployments.wait(server, record["id"], min(timeout, server.settings.deploy_timeout_s)) or record
    answer = deployments.view(server, record)
    if answer["status"] == "failed":
        answer["message"] = f"deployment failed: {answer['error']}"
        return jsonify(dump(DeploymentStatus, answer)), 422
    if answer["status"] == "succeeded":
        return jsonify(dump(DeploymentStatus, answer)), 200
    answer["message"] = f"deployment {answer['status']}; poll /deploy/status?id={answer['id']}"
    return jsonify(dump(DeploymentStatus, answer)), 202


@bp.get("/deploy/status")
@document(
    summary="A deployment's status and what each live replica serves (the same on every replica)",
    query=DeployStatusQuery,
    responses={200: DeploymentStatus, 404: ErrorBody},
)
def deploy_status():
    """Readable without a token: it reveals versions, hosts and errors, never data. Same on every pod."""
    server = _server()
    deployment_id = request.args.get("id")
    if deployment_id:
        record = server.replicas.deployment(deployment_id)
        if record is None:
            raise ApiError(404, f"no record of deployment {deployment_id!r}", error="deployment_not_found")
        return jsonify(dump(DeploymentStatus, deployments.view(server, record)))
    answer = deployments.current(server)
    if answer is None:
        raise ApiError(
            404,
            f"no deployment yet: no replica has read alias {server.manager.alias!r} from the registry",
            error="deployment_not_found",
        )
    return jsonify(dump(DeploymentStatus, answer))


@bp.get("/replicas")
@document(
    summary="The live replicas: what each serves, its workers and load errors",
    responses={200: ReplicasResponse},
)
def replicas():
    """The live replicas (seen within ``replica_ttl_s``): what each serves, its workers and load errors."""
    return jsonify(dump(ReplicasResponse, deployments.replicas_json(_server())))


@bp.after_app_request
def _name_the_replica(response):
    """``X-Sentiflow-Replica`` on every answer: which replica (pod) behind the Service answered."""
    server = current_app.extensions.get("sentiflow")
    if server is not None:
        response.headers["X-Sentiflow-Replica"] = server.manager.follower.replica_id
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
