"""Response models of ``GET /replicas``: what any client sees, and the detail the admin token adds.

The route builds its answer through these models (``model_validate(...).model_dump(mode="json")``), so
the OpenAPI document generated from them describes exactly what is sent. The public models keep what a
client needs to see a release converge (versions, states, counts); host names, load errors and registry
errors name internals and go only to a caller with the admin token (the detail models).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

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
