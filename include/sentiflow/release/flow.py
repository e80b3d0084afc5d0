"""The release after selection, free of Airflow: stage, promote, deploy, check, report; roll back on any
failure after the promotion.

``stage`` comes first: the ``candidate`` alias names the version, and every live replica loads, verifies
and warms it up without serving it (it has no approval yet), so the champion's move that follows swaps a
model already in memory. A replica that cannot stage it fails the release before anything is promoted.

There is never an unchecked ``champion``: once ``promote`` moved the aliases, **any** failure of the steps
after it — the deploy, the inference check's HTTP calls, a wrong version answering, accuracy below the
bar, the S3 report or the MLflow upload — restores exactly the aliases from before the promotion, tags the
version ``rolled_back_reason`` (so ``registry.all_candidates`` never offers it again unless a user names it),
records the reason on the candidate's MLflow run, asks the server to serve the restored champion, and raises
``ReleaseError`` with the reason and the state things were left in.

The aliases from before a promotion are written to a registered-model tag before anything moves, so a
``promote`` retried after a partial success (``previous`` moved, ``champion`` not) restores or completes from
the same starting point instead of mistaking the half-moved state for the original. The DAG's tasks
(``orchestration/release_tasks.py``) are thin wrappers around ``promote``, ``deploy`` and ``check``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sentiflow import registry
from sentiflow.names import TAG_RELEASE_FAILURE, TAG_RELEASE_PRIOR_ALIASES, TAG_ROLLED_BACK
from sentiflow.registry import PriorAliases
from sentiflow.settings.components import MLflowSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from sentiflow.serving_client import ModelServerClient

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Registry writes of a rollback are retried this often (with doubling waits): MLflow may be restarting.
ROLLBACK_ATTEMPTS = 4
ROLLBACK_BACKOFF_S = 2.0


class ReleaseError(RuntimeError):
    """The release failed after promotion and was rolled back; the message says why and what state is left."""


class StagingError(RuntimeError):
    """A replica could not stage the candidate; nothing was promoted, the champion is unchanged."""


class CheckFailedError(RuntimeError):
    """The inference check ran and the model failed it (accuracy, or another version answered)."""


def pending(client: MlflowClient, settings: MLflowSettings) -> PriorAliases | None:
    """The starting point a release in progress recorded, or None (none recorded, or no such model yet).

    Only the registry's own "not found" reads as "nothing recorded"; any other failure (MLflow down, an
    error answer) propagates as it is.
    """
    try:
        tags = client.get_registered_model(settings.registered_model_name).tags or {}
    except Exception as exc:
        if registry.is_not_found(exc):
            return None
        raise
    raw = tags.get(TAG_RELEASE_PRIOR_ALIASES)
    try:
        return PriorAliases.from_json(raw) if raw else None
    except (ValueError, KeyError):
        log.warning("ignoring an unreadable %s tag: %r", TAG_RELEASE_PRIOR_ALIASES, raw)
        return None


def _sign(
    client: MlflowClient,
    settings: MLflowSettings,
    version: str,
    *,
    approved: bool,
    reason: str,
    dag_run_id: str | None,
) -> None:
    """Sign a statement on ``version`` (``sentiflow.security.approval``) with the pipeline's key; without a
    key (a development stack that loads unsigned versions) nothing is signed and the log says so."""
    from sentiflow.security import approval
    from sentiflow.settings.components import SigningSettings

    key = SigningSettings().key()
    if key is None:
        what = "approved" if approved else "revoked"
        log.warning("no signing key: version %s is %s without a signed statement", version, what)
        return
    approval.record(
        client,
        settings.registered_model_name,
        version,
        key,
        approved=approved,
        reason=reason[:2000],
        dag_run_id=dag_run_id,
    )


def stage(
    client: MlflowClient,
    settings: MLflowSettings,
    server: ModelServerClient,
    version: str,
    *,
    timeout_s: float,
) -> bool:
    """``candidate`` → ``version``, then wait until every live replica holds it staged (``/replicas``).

    True when they all do. ``StagingError`` as soon as one reports a failed staging (the version's signature
    does not verify, it cannot be deserialized or cannot predict): the candidate alias is removed and nothing
    is promoted. A timeout is logged and returns False: the promotion goes ahead, the deploy's wait bounds
    it, and replicas that had not staged the version yet load it then.
    """
    from sentiflow.serving_client import ReplicaStagingError

    version = str(version)
    registry.set_alias(client, settings, settings.candidate_alias, version)
    try:
        server.wait_for_staged(version, timeout_s=timeout_s)
    except ReplicaStagingError as exc:
        registry.set_alias(client, settings, settings.candidate_alias, None)
        raise StagingError(f"version {version} was not promoted: {exc}") from exc
    except Exception as exc:
        log.warning("not every replica staged version %s (%s); promoting it anyway", version, exc)
        return False
    log.info("every live replica staged version %s", version)
    return True


def promote(
    client: MlflowClient,
    settings: MLflowSettings,
    version: str,
    *,
    reason: str = "promoted by the pipeline",
    dag_run_id: str | None = None,
) -> PriorAliases:
    """``champion`` → ``version``, the old champion → ``previous``; returns the aliases from before.

    The version's signed approval (``reason``: why it is released) is written before the alias moves, so
    every replica that follows the move finds it. A retry of the same promotion reuses the recorded
    starting point. If moving the aliases fails half way, the starting point is restored (and served
    again under a new approval) before the error propagates.
    """
    version = str(version)
    prior = pending(client, settings)
    if prior is None or prior.candidate != version:
        prior = registry.current_aliases(client, settings, version)
        client.set_registered_model_tag(
            settings.registered_model_name, TAG_RELEASE_PRIOR_ALIASES, prior.to_json()
        )
    if prior.champion == version:  # already the champion before this release: nothing moves
        return prior
    _sign(client, settings, version, approved=True, reason=reason, dag_run_id=dag_run_id)
    try:
        registry.promote(client, settings, version)  # the one alias move: the server only follows it
    except Exception:
        log.exception("promotion of %s failed half way; restoring the aliases from before", version)
        if prior.champion is not None:
            again = f"served again: the promotion of version {version} failed"
            _sign(client, settings, prior.champion, approved=True, reason=again, dag_run_id=dag_run_id)
        _sign(client, settings, version, approved=False, reason="its promotion failed", dag_run_id=dag_run_id)
        registry.put_back(client, settings, prior)
        raise
    return prior


def finish(client: MlflowClient, settings: MLflowSettings) -> None:
    """The release is over (its check passed, or it was rolled back): forget the recorded starting point and
    the candidate alias, so no replica keeps a staged copy of a version nobody is about to promote."""
    client.delete_registered_model_tag(settings.registered_model_name, TAG_RELEASE_PRIOR_ALIASES)
    registry.set_alias(client, settings, settings.candidate_alias, None)


def _retrying(what: str, fn: Callable[[], T], attempts: int, backoff_s: float) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception:
            if attempt == attempts:
                raise
            log.warning("%s failed (attempt %d of %d); retrying", what, attempt, attempts, exc_info=True)
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def roll_back(
    client: MlflowClient,
    settings: MLflowSettings,
    prior: PriorAliases,
    reason: str,
    *,
    server: ModelServerClient | None = None,
    timeout_s: float = 600.0,
    run_id: str | None = None,
    attempts: int = ROLLBACK_ATTEMPTS,
    backoff_s: float = ROLLBACK_BACKOFF_S,
) -> str:
    """Restore the aliases from before the promotion, tag the failed version, serve the old champion.

    Never raises: the caller is failing with ``reason`` already; the returned sentence says what was
    restored and what could not be (so an operator knows what to fix by hand).
    """
    from sentiflow.release.deploy import DeployError, deploy_version

    failed = prior.candidate
    notes: list[str] = []

    def registry_part() -> None:
        # the statements first, so replicas that follow the restored alias find the new approval; not when
        # someone else moved champion meanwhile (restore_aliases leaves their choice alone, and so do we)
        current = registry.version_for_alias(client, settings, settings.champion_alias)
        ours = current in (failed, prior.champion)
        if ours and prior.champion is not None:
            again = f"served again: the release of version {failed} was rolled back"
            _sign(client, settings, prior.champion, approved=True, reason=again, dag_run_id=None)
        if ours:
            _sign(client, settings, failed, approved=False, reason=reason, dag_run_id=None)
        left_alone = registry.restore_aliases(client, settings, prior, reason)
        if left_alone:
            notes.append(left_alone)
            return
        finish(client, settings)

    try:
        _retrying("restoring the aliases", registry_part, attempts, backoff_s)
        if not notes:
            notes.append(
                f"aliases restored (champion {prior.champion or 'none'}, "
                f"previous {prior.previous or 'none'}); version {failed} tagged {TAG_ROLLED_BACK}"
            )
    except Exception as exc:
        notes.append(
            f"COULD NOT restore the aliases ({type(exc).__name__}: {exc}): set champion back to "
            f"{prior.champion} and previous to {prior.previous} by hand, and tag version {failed} "
            f"{TAG_ROLLED_BACK}"
        )
    if run_id:
        try:
            client.set_tag(run_id, TAG_RELEASE_FAILURE, reason[:5000])
        except Exception as exc:
            notes.append(f"the reason could not be written to MLflow run {run_id}: {exc}")
    if server is not None and prior.champion is not None:
        try:
            deploy_version(server, prior.champion, timeout_s=timeout_s)
            notes.append(f"model server back on version {prior.champion}")
        except DeployError as exc:
            notes.append(f"redeploying version {prior.champion} failed: {exc}")
    elif prior.champion is None:
        notes.append(f"version {failed} was the first champion: no champion now")
    message = "rolled back: " + "; ".join(notes)
    log.error("%s (reason: %s)", message, reason)
    return message


def guarded(
    client: MlflowClient,
    settings: MLflowSettings,
    prior: PriorAliases,
    step: str,
    fn: Callable[[], T],
    *,
    server: ModelServerClient | None,
    timeout_s: float,
    run_id: str | None = None,
) -> T:
    """Run ``fn``; on any exception roll back and raise ``ReleaseError`` naming ``step`` and the cause."""
    try:
        return fn()
    except Exception as exc:
        detail = str(exc) if isinstance(exc, CheckFailedError) else f"{type(exc).__name__}: {exc}"
        reason = f"{step} of version {prior.candidate} failed: {detail}"
        message = roll_back(
            client, settings, prior, reason, server=server, timeout_s=timeout_s, run_id=run_id
        )
        raise ReleaseError(f"{reason}; {message}") from exc


def deploy(
    client: MlflowClient,
    settings: MLflowSettings,
    server: ModelServerClient,
    prior: PriorAliases,
    *,
    timeout_s: float,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Serve the promoted version; ``/model`` must report it. Any failure rolls back."""
    from sentiflow.release.deploy import deploy_version

    return guarded(
        client,
        settings,
        prior,
        "deploy",
        lambda: deploy_version(server, prior.candidate, timeout_s=timeout_s),
        server=server,
        timeout_s=timeout_s,
        run_id=run_id,
    )


def check(
    client: MlflowClient,
    settings: MLflowSettings,
    server: ModelServerClient,
    prior: PriorAliases,
    *,
    run_check: Callable[[], Any],
    write_report: Callable[[Any], dict[str, Any]],
    timeout_s: float,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run the inference check, write its report, judge it; any failure (incl. the report's) rolls back.

    ``run_check()`` returns a ``checks.CheckReport``; ``write_report(report)`` stores it (S3, MLflow) and
    returns the summary. On success the recorded starting point is cleared: the release is complete.
    """

    def step() -> dict[str, Any]:
        report = run_check()
        summary = write_report(report)
        if report.version is not None and str(report.version) != prior.candidate:
            raise CheckFailedError(
                f"the server answered with version {report.version}, expected {prior.candidate}"
            )
        if not report.passed:
            raise CheckFailedError(
                f"inference check failed: accuracy {report.accuracy:.3f} < required "
                f"{report.required_accuracy:.3f} ({report.correct}/{len(report.rows)} correct; report "
                f"{summary.get('report_uri')})"
            )
        finish(client, settings)
        return summary

    return guarded(
        client, settings, prior, "inference check", step, server=server, timeout_s=timeout_s, run_id=run_id
    )
