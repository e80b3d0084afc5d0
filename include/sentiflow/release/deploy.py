"""The deploy mechanics of a release: every replica follows the alias, so deploying is waiting.

Promotion moved ``champion`` already (``registry.promote``, the one release operation); every worker of every
model-server replica follows that alias. ``deploy_version`` waits, bounded, until every live replica serves
the version (``GET /replicas`` behind the Service), failing at once when one reports a failed load. The
inference check counts only answers that name the version (``version_predict``). Talks to the server only
through ``sentiflow.serving_client.ModelServerClient``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sentiflow.serving_client import ModelServerClient, ServerEndpoint
from sentiflow.settings.components import MLflowSettings

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """The server did not end up serving the requested version; the old model is still served."""


def server_client(endpoint: ServerEndpoint) -> ModelServerClient:
    return ModelServerClient(endpoint.url, endpoint.token)


def model_not_served_here(name: str, served_name: str | None = None) -> str | None:
    """Why ``deploy`` must not deploy a version of ``name`` (None when the model server serves it).

    The model server serves one registered model (its ``SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME``, the
    deployment's default); a run into another ``registered_model_name`` promotes in the registry only.
    """
    served = served_name or MLflowSettings().registered_model_name
    if name == served:
        return None
    return (
        f"registered model {name!r} is not the one the model server serves ({served!r}): the version is "
        "champion of its model in the registry; deploy and the inference check are skipped"
    )


def deploy_version(client: ModelServerClient, version: str, *, timeout_s: float) -> dict[str, Any]:
    """Wait until every live replica serves ``version`` (the alias already names it); return ``/replicas``.

    ``DeployError`` when a replica reports a failed load of it or ``timeout_s`` passes; the caller rolls back.
    """
    try:
        answer = client.wait_for_replicas(str(version), timeout_s=timeout_s)
    except Exception as exc:
        raise DeployError(f"deploying version {version} to the model server failed: {exc}") from exc
    return {**answer, "version": str(version)}


def version_predict(
    client: ModelServerClient, version: str, *, attempts: int = 20, pause_s: float = 0.5
) -> Callable[[list[str]], Any]:
    """``client.predict`` that counts only answers naming ``version``.

    Behind a Service a request may still reach a replica that has not swapped yet (or one that just
    restarted); such answers are discarded and the texts sent again, up to ``attempts`` times. The last
    answer is returned whatever it names, so a check that never reaches ``version`` fails on the version.
    """

    def predict(texts: list[str]) -> Any:
        result = None
        for attempt in range(attempts):
            result = client.predict(texts)
            if str(result.model_version) == str(version):
                return result
            log.info("answer from version %s, not %s; asking again", result.model_version, version)
            if attempt < attempts - 1:
                time.sleep(pause_s)
        return result

    return predict
