"""Airflow tasks of ``sentiment_release``, the manual release of one named, already registered version.

validate_params → registered_version → select_best (``gate_release``) → the pipeline's own promote → deploy →
inference_check (``release_tasks.release_steps``). The named version is handed to the gate in the shape a
training task hands over the version it registered, so the gate, the alias moves, the wait for the replicas,
the check and the rollback are the pipeline's code. What differs is the gate's refusal: the pipeline keeps
its champion and succeeds, a manual release fails with the gate's reason (nothing moved). A version that
already is the champion is a release with nothing to do (keep_champion).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from pydantic import ValidationError

from sentiflow.names import GATE_DECISION_KEY, GATE_TASK
from sentiflow.orchestration.links import PROMOTE
from sentiflow.orchestration.model_form import model_from_params
from sentiflow.orchestration.params import (
    CheckSeed,
    ReleaseOrder,
    ReleasePolicy,
    ReleaseRequest,
    SelectionParams,
)
from sentiflow.orchestration.release_tasks import KEEP_CHAMPION, gate_decision
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.orchestration.task_context import IO_RETRIES, log, mlflow_settings
from sentiflow.orchestration.training_tasks import CHECK, SEED, SELECTION, refuse_unknown_conf
from sentiflow.release.check_plan import CheckParams

#: ``validate_release``'s output holding the ``ReleaseRequest`` (beside ``SELECTION``, ``CHECK``, ``SEED``).
REQUEST = "request"
REGISTERED_VERSION = "registered_version"


def validated_release(params: dict[str, Any]) -> dict[str, Any]:
    """Each group of the release's params as its model: the request, the pipeline's ``SelectionParams``
    (this run's one version), the check's params and the seed. The request and the gate's policy are
    validated together: forcing needs a reason."""
    try:
        order = ReleaseOrder(
            request=model_from_params(ReleaseRequest, params),
            policy=model_from_params(ReleasePolicy, params),
        )
        check = model_from_params(CheckParams, params)
        seed = model_from_params(CheckSeed, params).seed
    except ValidationError as exc:
        raise AirflowFailException(f"invalid release request: {exc}") from exc
    return {REQUEST: order.request, SELECTION: order.policy.selection(), CHECK: check, SEED: seed}


@task(task_id="validate_params", retries=0, multiple_outputs=True)
def validate_release() -> dict[str, Any]:
    """The trigger's conf: no unknown keys, the request and policy together valid (Airflow checked each
    param's schema when it created the run); each group's model for the tasks that use it."""
    context = get_current_context()
    refuse_unknown_conf(context)
    out = validated_release(context["params"])
    request: ReleaseRequest = out[REQUEST]
    log.info("release of version %s requested by %s", request.version, request.requested_by)
    return out


@task(task_id=REGISTERED_VERSION, **IO_RETRIES)
def registered_version(request: ReleaseRequest) -> dict[str, Any]:
    """The named version of the run's registered model, handed on as a training task hands over the version
    it registered (``model_version``, ``run_id``); a version that does not exist fails the run here."""
    from sentiflow import registry

    settings = mlflow_settings(PipelineSettings())
    name = settings.registered_model_name
    client = registry.mlflow_client(settings)
    try:
        found = client.get_model_version(name, request.version)
    except Exception as exc:
        if registry.is_not_found(exc):
            raise AirflowFailException(
                f"version {request.version} of registered model {name!r} does not exist: register it first "
                "(a pipeline run registers every model it trains), or name one of its versions"
            ) from exc
        raise  # the registry could not answer: retried
    log.info("version %s of %s: MLflow run %s", found.version, name, found.run_id)
    return {"model_version": str(found.version), "run_id": found.run_id}


@task.branch(task_id=GATE_TASK, **IO_RETRIES)
def gate_release(registered: dict[str, Any], selection: SelectionParams, request: ReleaseRequest) -> str:
    """The pipeline's gate (``release_tasks.gate_decision``) on the named version against the champion.

    Promote: on to ``promote``. Already the champion: ``keep_champion`` (nothing to move). Refused: the task
    fails with the gate's reason and nothing moves. The decision, with the requester and the forced reason,
    is the ``GATE_DECISION_KEY`` XCom either way (and the ``gate.*`` tags on the version's run).
    """
    from sentiflow.registry import SelectionError

    context = get_current_context()
    try:
        decided = gate_decision([registered], selection, context["run_id"])
    except SelectionError as exc:  # e.g. the version logged no value of the selection metric
        raise AirflowFailException(f"the gate cannot judge version {request.version}: {exc}") from exc
    forced = request.force_reason if selection.force_promote and decided.promote else None
    decision = decided.model_copy(update={"requested_by": request.requested_by, "force_reason": forced})
    context["ti"].xcom_push(key=GATE_DECISION_KEY, value=decision.model_dump(mode="json"))
    asked = f"requested by {request.requested_by}" + (f", forced: {forced}" if forced else "")
    if decision.promote:
        log.info("release of version %s (%s) passes the gate: %s", request.version, asked, decision.reason)
        return PROMOTE
    if decision.champion_version == decision.candidate_version:
        log.info("version %s (%s) is already the champion: nothing to release", request.version, asked)
        return KEEP_CHAMPION
    refused = f"release of version {request.version} ({asked}) refused by the gate: {decision.reason}"
    raise AirflowFailException(f"{refused}. Nothing moved.")
