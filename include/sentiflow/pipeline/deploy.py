"""Deploy a registry version to the model server and roll back when a release goes wrong.

Talks to the server only through ``sentiflow.serving_client.ModelServerClient`` (the server's own client),
so the DAG and the web page share one implementation of the REST calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sentiflow.config import MLflowSettings
from sentiflow.pipeline import registry
from sentiflow.pipeline.connections import ServerEndpoint

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """The server did not end up serving the requested version; the old model is still served."""


def server_client(endpoint: ServerEndpoint) -> Any:
    from sentiflow.serving_client import ModelServerClient

    return ModelServerClient(endpoint.url, endpoint.token)


def deploy_version(client: Any, version: str, *, timeout_s: float) -> dict[str, Any]:
    """Ask the server to load ``version`` and wait until ``/model`` reports it; return ``/model``."""
    try:
        client.deploy(version=str(version), wait=True, timeout_s=timeout_s)
        info = client.wait_for_version(str(version), timeout_s=timeout_s)
    except Exception as exc:
        raise DeployError(f"deploying version {version} to the model server failed: {exc}") from exc
    served = str(info.get("version"))
    if served != str(version):
        raise DeployError(f"the model server serves version {served} after deploying {version}")
    return info


@dataclass(frozen=True)
class RollbackResult:
    champion: str | None
    served: str | None
    message: str


def roll_back(
    mlflow_client: Any,
    settings: MLflowSettings,
    server: Any | None,
    failed_version: str,
    reason: str,
    *,
    timeout_s: float,
    restore_previous: str | None = None,
) -> RollbackResult:
    """Move ``champion`` back to ``previous`` and, when a server is given, serve that version again.

    Never raises for the server part: the caller is already failing with the original reason, and the
    message says what state things were left in.
    """
    restored = registry.rollback(
        mlflow_client, settings, failed_version, reason, restore_previous=restore_previous
    )
    if restored is None:
        return RollbackResult(
            None, None, f"version {failed_version} was the first champion: alias removed, nothing to restore"
        )
    if server is None:
        return RollbackResult(restored, None, f"champion alias moved back to version {restored}")
    try:
        info = deploy_version(server, restored, timeout_s=timeout_s)
    except DeployError as exc:
        return RollbackResult(
            restored, None, f"champion back to version {restored}, but redeploy failed: {exc}"
        )
    return RollbackResult(
        restored, str(info.get("version")), f"champion and model server back to version {restored}"
    )
