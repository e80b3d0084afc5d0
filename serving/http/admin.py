"""Admin blueprint: manual releases as Airflow runs (admin token), the live replicas."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from sentiflow import names
from serving.extension import ServerExtension, server
from serving.http.auth import is_admin, require_admin
from serving.http.bodies import parse_body
from serving.http.errors import ApiError
from serving.http.openapi import ErrorBody, document
from serving.http.queries import DeployQuery, DeployStatusQuery, parse_query
from serving.http.schemas import DeployRequest, ReleaseRunStatus, ReplicasDetail, ReplicasResponse, dump
from serving.releases import (
    AirflowNotConfiguredError,
    AirflowUnavailableError,
    ReleaseRefusedError,
    ReleaseRun,
    ReleaseRunNotFoundError,
    release_conf,
)
from serving.store.replicas import ReplicaView

bp = Blueprint("admin", __name__)


@bp.post("/deploy")
@document(
    summary="Release a registered version: a run of the release DAG in Airflow (admin token)",
    body=DeployRequest,
    query=DeployQuery,
    responses={
        200: ReleaseRunStatus,
        202: ReleaseRunStatus,
        400: ErrorBody,
        401: ErrorBody,
        422: [ErrorBody, ReleaseRunStatus],
        503: ErrorBody,
    },
)
@require_admin
def deploy() -> ResponseReturnValue:
    """Ask Airflow for a release run (gate → promote → deploy → check); the server itself moves nothing.

    202 with the run; ``?wait=true`` answers once the run ended: 200 on success, 422 with the failed tasks.
    """
    ext = server()
    body = parse_body(DeployRequest)
    query = parse_query(DeployQuery)  # a bad one is a 400 before anything is asked
    conf = release_conf(str(body.version), body.requested_by, body.force_promote, body.force_reason)
    with _airflow_errors():
        run = ext.releases.trigger(conf)
        if query.wait:
            cap = ext.settings.deploy_timeout_s
            run = ext.releases.wait(run.dag_run_id, cap if query.timeout is None else min(query.timeout, cap))
    return _answer(run)


@bp.get("/deploy/status")
@document(
    summary="A release run's state, failed tasks and Airflow link (admin token)",
    query=DeployStatusQuery,
    responses={
        200: ReleaseRunStatus,
        202: ReleaseRunStatus,
        400: ErrorBody,
        401: ErrorBody,
        404: ErrorBody,
        422: [ErrorBody, ReleaseRunStatus],
        503: ErrorBody,
    },
)
@require_admin
def deploy_status() -> ResponseReturnValue:
    """The run as Airflow has it now: 202 while queued or running, 200 on success, 422 when it failed."""
    run_id = parse_query(DeployStatusQuery).id
    with _airflow_errors():
        run = server().releases.get(run_id)
    return _answer(run)


def _answer(run: ReleaseRun) -> tuple[Response, int]:
    answer = asdict(run)
    if run.state == "success":
        return jsonify(dump(ReleaseRunStatus, answer)), 200
    if run.state == "failed":
        failed = ", ".join(run.failed_tasks) or "no task reported"
        why = f": {run.gate_reason}" if run.gate_reason and names.GATE_TASK in run.failed_tasks else ""
        answer["message"] = (
            f"release run {run.dag_run_id} failed (tasks: {failed}){why}; see {run.airflow_url}"
        )
        return jsonify(dump(ReleaseRunStatus, answer)), 422
    answer["message"] = f"release run {run.state}; poll /deploy/status?id={run.dag_run_id}"
    return jsonify(dump(ReleaseRunStatus, answer)), 202


@contextmanager
def _airflow_errors() -> Iterator[None]:
    """Airflow's answers as the API's errors: 503 naming the setting or the address, 422, 404."""
    try:
        yield
    except AirflowNotConfiguredError as exc:
        raise ApiError(503, str(exc), error="airflow_not_configured") from exc
    except AirflowUnavailableError as exc:
        raise ApiError(503, str(exc), error="airflow_unavailable") from exc
    except ReleaseRefusedError as exc:
        raise ApiError(422, str(exc), error="release_refused") from exc
    except ReleaseRunNotFoundError as exc:
        raise ApiError(404, str(exc), error="release_run_not_found") from exc


@bp.get("/replicas")
@document(
    summary="The live replicas: what each serves and its workers (with the admin token: hosts, load errors)",
    responses={200: [ReplicasResponse, ReplicasDetail]},
)
def replicas() -> ResponseReturnValue:
    """The live replicas (seen within ``replica_ttl_s``): what each serves and its workers' states; the
    admin token adds each replica's host, load errors and registry errors."""
    return jsonify(dump(ReplicasDetail if is_admin() else ReplicasResponse, replicas_json(server())))


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
