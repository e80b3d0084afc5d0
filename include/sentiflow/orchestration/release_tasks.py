"""Airflow tasks of the release stage, shared by every DAG: select_best (the gate) → promote → deploy →
inference_check, or keep_champion (``sentiment_release`` gates its one named version with
``release_request.gate_release`` under the same task id, then the same tasks). The release logic itself
(alias moves, waiting for replicas, the check's report, rollback on any failure) is Airflow-free in
``sentiflow.release.flow``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from sentiflow.gate.judge import Decision
from sentiflow.names import GATE_DECISION_KEY, GATE_TASK
from sentiflow.orchestration.links import INFERENCE_CHECK, PROMOTE
from sentiflow.orchestration.params import SelectionParams
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.orchestration.task_context import (
    CHAMPION_MODEL,
    IO_RETRIES,
    log,
    mlflow_settings,
    object_store,
    server_endpoint,
    training_results,
)
from sentiflow.orchestration.training_tasks import CHECK, SEED, SELECTION
from sentiflow.release.check_plan import CheckParams

#: The task select_best chooses when the gate says no (``PROMOTE`` when it says yes).
KEEP_CHAMPION = "keep_champion"


# --- selection and release (the shared tail) -------------------------------------------------------------
class Selected(Decision):
    """select_best's ``decision`` XCom: the gate's ``Decision`` (its fields are the ``gate.*`` tags) plus
    the scope it chose in and the versions it chose among; for a manual release (``sentiment_release``) who
    asked and, when forced, why (``promote`` records both on the version)."""

    scope: str
    candidates: list[str]
    requested_by: str | None = None
    force_reason: str | None = None


def gate_decision(results: list[dict[str, Any]], selection: SelectionParams, dag_run_id: str) -> Selected:
    """Best version by the selection metric, then the gate against the champion (``gate.scoring``)."""
    from sentiflow import registry
    from sentiflow.gate.comparison import ComparisonError
    from sentiflow.gate.scoring import decide
    from sentiflow.security.signing import SignatureError

    pipeline = PipelineSettings()
    settings = mlflow_settings(pipeline)
    client = registry.mlflow_client(settings)
    name = settings.registered_model_name
    scope = selection.selection_scope
    if scope == "all_versions":
        candidates = registry.all_candidates(client, name)
    else:
        versions = [str(r["model_version"]) for r in results if r and r.get("model_version")]
        if not versions:
            raise AirflowFailException(f"training registered no version of {name!r} in this run")
        candidates = registry.candidates_for_versions(client, name, versions)
    metric = selection.selection_metric
    try:
        decision = decide(
            client, settings, object_store(pipeline), candidates, selection, dag_run_id=dag_run_id
        )
    except ComparisonError as exc:
        raise AirflowFailException(f"champion and challenger could not be compared: {exc}") from exc
    except SignatureError as exc:  # a retry would download the same files: fail now, naming the signature
        raise AirflowFailException(f"the gate refused to load a version: {exc}") from exc
    for c in candidates:
        log.info(
            "candidate version %s (%s, run %s): %s=%s", c.version, c.family, c.run_id, metric, c.value(metric)
        )
    log.info("selected version %s; gate: %s", decision.candidate_version, decision.reason)
    return Selected(**decision.model_dump(), scope=scope, candidates=[c.version for c in candidates])


@task.branch(task_id=GATE_TASK, trigger_rule="none_failed_min_one_success", **IO_RETRIES)
def select_best(training_outputs: list[Any], selection: SelectionParams) -> str:
    """Branch: pick the best version among the training tasks' results, gate it against the champion.

    ``training_outputs``: the training tasks' outputs (XComArgs; None for a task the branch skipped). The
    decision (``Selected``) goes to XCom under ``GATE_DECISION_KEY`` as a plain dict, which the UI's links
    read without importing the model, for promote / keep_champion.
    """
    context = get_current_context()
    decision = gate_decision(training_results(training_outputs), selection, context["run_id"])
    context["ti"].xcom_push(key=GATE_DECISION_KEY, value=decision.model_dump(mode="json"))
    return PROMOTE if decision.promote else KEEP_CHAMPION


@task(task_id=KEEP_CHAMPION)
def keep_champion(decision: dict[str, Any]) -> dict[str, Any]:
    """The gate said no: the champion and the served version stay; the reason is this task's log and XCom."""
    log.info("champion kept: %s", Selected.model_validate(decision).reason)
    return decision


@task(task_id=PROMOTE, outlets=[CHAMPION_MODEL], **IO_RETRIES)
def promote(decision: dict[str, Any]) -> dict[str, Any]:
    """Every replica stages the selected version (``release.stage``), then alias ``champion`` → it; the old
    champion becomes ``previous`` (``release.promote``). A replica that cannot stage it fails the task with
    the champion unchanged.

    Retries are safe: the aliases from before are recorded in the registry before anything moves.
    """
    from sentiflow import registry
    from sentiflow.release import flow as release
    from sentiflow.release.deploy import model_not_served_here, server_client

    context = get_current_context()
    selected = Selected.model_validate(decision)
    pipeline = PipelineSettings()
    settings = mlflow_settings(pipeline)
    client = registry.mlflow_client(settings)
    if model_not_served_here(settings.registered_model_name) is None:
        server = server_client(server_endpoint(pipeline))
        try:
            release.stage(
                client, settings, server, selected.candidate_version, timeout_s=pipeline.stage_timeout_s
            )
        except release.StagingError as exc:
            raise AirflowFailException(str(exc)) from exc
    # the signed approval says why: the gate's decision, and for a manual release who asked (and why forced)
    why = selected.reason
    if selected.requested_by:
        why = f"released at the request of {selected.requested_by}: {why}"
    if selected.force_reason:
        why = f"{why}; forced: {selected.force_reason}"
    prior = release.promote(
        client, settings, selected.candidate_version, reason=why, dag_run_id=context["run_id"]
    )
    log.info("promoted version %s (previous: %s): %s", prior.candidate, prior.champion, selected.reason)
    if selected.requested_by:
        record_request(client, settings.registered_model_name, selected, context["run_id"])
    context["outlet_events"][CHAMPION_MODEL].extra = {
        "registered_model": settings.registered_model_name,
        "version": prior.candidate,
    }
    return {
        "version": prior.candidate,
        "previous": prior.champion,
        "prior_previous": prior.previous,
        "run_id": selected.candidate_run_id,
    }


def record_request(client: Any, model_name: str, selected: Selected, dag_run_id: str) -> None:
    """Version tags of a manual release: who asked, the forced reason (else an older one goes), the run."""
    from sentiflow.names import TAG_RELEASE_DAG_RUN, TAG_RELEASE_FORCE_REASON, TAG_RELEASE_REQUESTED_BY

    version = selected.candidate_version
    client.set_model_version_tag(model_name, version, TAG_RELEASE_REQUESTED_BY, str(selected.requested_by))
    client.set_model_version_tag(model_name, version, TAG_RELEASE_DAG_RUN, dag_run_id)
    if selected.force_reason:
        reason = selected.force_reason[:5000]
        client.set_model_version_tag(model_name, version, TAG_RELEASE_FORCE_REASON, reason)
    elif TAG_RELEASE_FORCE_REASON in (client.get_model_version(model_name, version).tags or {}):
        client.delete_model_version_tag(model_name, version, TAG_RELEASE_FORCE_REASON)
    forced = f"; forced: {selected.force_reason}" if selected.force_reason else ""
    log.info("version %s released at the request of %s%s", version, selected.requested_by, forced)


def _release_context(promoted: dict[str, Any]) -> tuple[Any, Any, Any, Any, PipelineSettings]:
    """(MLflow client, MLflow settings, server client, prior aliases, pipeline settings) of a release."""
    from sentiflow import registry
    from sentiflow.registry import PriorAliases
    from sentiflow.release.deploy import server_client

    pipeline = PipelineSettings()
    settings = mlflow_settings(pipeline)
    prior = PriorAliases(
        candidate=str(promoted["version"]),
        champion=promoted.get("previous"),
        previous=promoted.get("prior_previous"),
    )
    server = server_client(server_endpoint(pipeline))
    return registry.mlflow_client(settings), settings, server, prior, pipeline


@task(task_id="deploy", execution_timeout=timedelta(minutes=30), retries=0)
def deploy(promoted: dict[str, Any]) -> dict[str, Any]:
    """Wait until every live model-server replica serves the new champion (they follow the alias promote
    moved); any failure (a failed load, ``deploy_timeout_s`` passed) restores the aliases from before and
    the replicas follow them back (``release.deploy``).

    No retries: a failed deploy restored the aliases and the old model, so the run ends in a consistent
    state and says why.
    """
    from sentiflow.release import flow as release
    from sentiflow.release.deploy import model_not_served_here

    client, settings, server, prior, pipeline = _release_context(promoted)
    elsewhere = model_not_served_here(settings.registered_model_name)
    if elsewhere:  # registered_model_name names a model this server does not serve
        release.finish(client, settings)  # nothing to deploy or check here: the promotion is the release
        raise AirflowSkipException(elsewhere)
    try:
        info = release.deploy(
            client,
            settings,
            server,
            prior,
            timeout_s=pipeline.deploy_timeout_s,
            run_id=promoted.get("run_id"),
        )
    except release.ReleaseError as exc:
        raise AirflowFailException(str(exc)) from exc
    log.info("every model-server replica serves version %s", info.get("version"))
    return {**promoted, "version": str(info.get("version"))}


@task(task_id=INFERENCE_CHECK, execution_timeout=timedelta(minutes=15), retries=0)
def inference_check(deployed: dict[str, Any], check: CheckParams, seed: int) -> dict[str, Any]:
    """Known texts → ``/predict``; a report to S3 and MLflow; any failure (the check's, the report's, the
    server's): roll back to the aliases from before and fail (``release.check``).

    ``seed``: the run's seed, for the sampled cases.
    """
    from sentiflow.data.collect import sanitize_run_id
    from sentiflow.release import flow as release
    from sentiflow.release.check_plan import plan_check
    from sentiflow.release.checks import publish_report, run_check
    from sentiflow.release.deploy import version_predict

    context = get_current_context()
    client, settings, server, prior, pipeline = _release_context(deployed)
    store = object_store(pipeline)
    prefix = store.uri(pipeline.reports_prefix, sanitize_run_id(context["run_id"]), INFERENCE_CHECK)

    def check_report() -> Any:
        # sampled from the deployed model's test split + the trigger's cases; bar from its test accuracy
        plan = plan_check(store, client, deployed.get("run_id"), check, seed=seed)
        log.info(
            "%d check cases (%d sampled from %s); required accuracy %.3f",
            len(plan.cases), plan.sampled, plan.sampled_from, plan.required_accuracy,
        )  # fmt: skip
        # answers from a replica that has not swapped yet do not count
        predict = version_predict(server, prior.candidate)
        return run_check(predict, plan.cases, plan.required_accuracy, log=log.info)

    def write_report(report: Any) -> dict[str, Any]:
        extra = {"dag_run_id": context["run_id"], "expected_version": prior.candidate}
        summary = publish_report(
            report, store=store, prefix=prefix, client=client, run_id=deployed.get("run_id"), extra=extra
        )
        log.info("inference check: %s", json.dumps(summary))
        return summary

    try:
        return release.check(
            client,
            settings,
            server,
            prior,
            run_check=check_report,
            write_report=write_report,
            timeout_s=pipeline.deploy_timeout_s,
            run_id=deployed.get("run_id"),
        )
    except release.ReleaseError as exc:
        raise AirflowFailException(str(exc)) from exc


def release_tail(training_outputs: list[Any], params: Any) -> Any:
    """select_best → (promote → deploy → inference_check | keep_champion); returns select_best.

    ``training_outputs``: the training tasks' outputs (XComArgs); passing them makes those tasks upstream.
    ``params``: ``validate_params``' output (its ``SELECTION``, ``CHECK`` and ``SEED`` groups are used).
    """
    selected = select_best(training_outputs, params[SELECTION])
    release_steps(selected, params)
    return selected


def release_steps(selected: Any, params: Any) -> None:
    """What follows the gate: promote → deploy → inference_check, or keep_champion.

    ``selected``: the gate's branch task (``select_best``, or ``sentiment_release``'s ``gate_release``), which
    pushed its decision under ``GATE_DECISION_KEY``; ``params``: a validation task's output with ``CHECK`` and
    ``SEED``.
    """
    decision = selected[GATE_DECISION_KEY]
    keep_champion(decision)
    promoted: Any = promote(decision)
    deployed: Any = deploy(promoted)
    inference_check(deployed, params[CHECK], params[SEED])
