"""Admin blueprint: deploy (token; moves the alias), deployments and replicas, feedback export (token)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from sentiflow.mlflow_auth import DeployNotAllowedError
from sentiflow.registry import ModelNotFoundError, RegistryUnavailableError
from serving.extension import server
from serving.http.auth import require_admin
from serving.http.bodies import parse_body
from serving.http.errors import ApiError
from serving.http.openapi import ErrorBody, document
from serving.http.queries import DeployQuery, DeployStatusQuery, ExportQuery, parse_query
from serving.http.replica_schemas import DeploymentStatus, ReplicasResponse, dump
from serving.http.schemas import DeployRequest
from serving.model import deploy as deployments

bp = Blueprint("admin", __name__)


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
    ext = server()
    body = parse_body(DeployRequest)
    query = parse_query(DeployQuery)  # a bad one is a 400 before anything moves
    timeout = ext.settings.deploy_timeout_s if query.timeout is None else query.timeout
    try:
        record = deployments.release(
            ext, version=None if body.version is None else str(body.version), alias=body.alias
        )
    except DeployNotAllowedError as exc:
        raise ApiError(403, str(exc), error="deploy_not_allowed") from exc
    except ModelNotFoundError as exc:
        raise ApiError(404, str(exc), error="model_not_found") from exc
    except RegistryUnavailableError as exc:
        raise ApiError(503, str(exc), error="registry_unavailable") from exc
    if not query.wait:
        return jsonify(dump(DeploymentStatus, deployments.view(ext, record))), 202
    record = deployments.wait(ext, record["id"], min(timeout, ext.settings.deploy_timeout_s)) or record
    answer = deployments.view(ext, record)
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
    ext = server()
    deployment_id = parse_query(DeployStatusQuery).id
    if deployment_id:
        record = ext.deployments.get(deployment_id)
        if record is None:
            raise ApiError(404, f"no record of deployment {deployment_id!r}", error="deployment_not_found")
        return jsonify(dump(DeploymentStatus, deployments.view(ext, record)))
    answer = deployments.current(ext)
    if answer is None:
        raise ApiError(
            404,
            f"no deployment yet: no replica has read alias {ext.alias!r} from the registry",
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
    return jsonify(dump(ReplicasResponse, deployments.replicas_json(server())))


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
