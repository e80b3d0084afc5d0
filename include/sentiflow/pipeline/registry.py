"""The MLflow side of selection and promotion: candidates from runs, the champion, alias moves.

Selection reads metrics from *runs* (``search_model_versions`` cannot filter or sort by metrics); promotion
only moves aliases (``champion`` is served, ``previous`` is kept for rollback), never copies models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sentiflow.config import MLflowSettings
from sentiflow.names import TAG_MODEL_FAMILY
from sentiflow.pipeline.selection import Candidate

log = logging.getLogger(__name__)

#: Version tag written when a version is rolled back, so the registry shows why it stopped being champion.
TAG_ROLLED_BACK = "rolled_back_reason"


def mlflow_client(settings: MLflowSettings | None = None) -> Any:
    from mlflow import MlflowClient

    settings = settings or MLflowSettings()
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def _candidate(client: Any, model_version: Any) -> Candidate:
    run = client.get_run(model_version.run_id)
    return Candidate(
        version=str(model_version.version),
        run_id=model_version.run_id,
        metrics=dict(run.data.metrics),
        family=run.data.tags.get(TAG_MODEL_FAMILY),
    )


def candidates_for_versions(client: Any, model_name: str, versions: Iterable[str]) -> list[Candidate]:
    return [_candidate(client, client.get_model_version(model_name, str(v))) for v in dict.fromkeys(versions)]


def all_candidates(client: Any, model_name: str) -> list[Candidate]:
    """Every version of the registered model (the ``selection_scope=all_versions`` setting)."""
    return [_candidate(client, v) for v in client.search_model_versions(f"name = '{model_name}'")]


def version_for_alias(client: Any, settings: MLflowSettings, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(settings.registered_model_name, alias).version)
    except Exception as exc:  # MlflowException: no such alias, or no such registered model yet
        if _is_missing(exc) or "alias" in str(exc).lower():
            return None
        raise


def champion(client: Any, settings: MLflowSettings) -> Candidate | None:
    """The current champion with its run's metrics, or None before the first promotion."""
    version = version_for_alias(client, settings, settings.champion_alias)
    if version is None:
        return None
    return _candidate(client, client.get_model_version(settings.registered_model_name, version))


@dataclass(frozen=True)
class AliasMove:
    champion: str
    previous: str | None
    #: What ``previous`` pointed at before this move: a rollback puts it back, so a failed release leaves
    #: both aliases exactly as they were.
    prior_previous: str | None = None


def promote(client: Any, settings: MLflowSettings, version: str) -> AliasMove:
    """Make ``version`` the champion; the old champion becomes ``previous`` (the rollback target)."""
    name = settings.registered_model_name
    old = version_for_alias(client, settings, settings.champion_alias)
    prior_previous = version_for_alias(client, settings, settings.previous_alias)
    if old == str(version):
        return AliasMove(champion=old, previous=prior_previous, prior_previous=prior_previous)
    if old is not None:
        client.set_registered_model_alias(name, settings.previous_alias, old)
    client.set_registered_model_alias(name, settings.champion_alias, str(version))
    log.info("promoted %s version %s to @%s (previous: %s)", name, version, settings.champion_alias, old)
    return AliasMove(champion=str(version), previous=old, prior_previous=prior_previous)


def rollback(
    client: Any,
    settings: MLflowSettings,
    failed_version: str,
    reason: str,
    *,
    restore_previous: str | None = None,
) -> str | None:
    """Point ``champion`` back at ``previous`` after ``failed_version`` failed; return the new champion.

    The failed version is tagged with the reason. ``previous`` then points at ``restore_previous`` (what it
    was before the failed promotion, ``AliasMove.prior_previous``), or is removed when that is unknown, so
    one version never holds both aliases. Without a ``previous`` (the first champion failed) the champion
    alias is removed, so nothing claims to be a good model; the caller says so.
    """
    name = settings.registered_model_name
    client.set_model_version_tag(name, str(failed_version), TAG_ROLLED_BACK, reason[:5000])
    current = version_for_alias(client, settings, settings.champion_alias)
    if current != str(failed_version):
        return current  # someone already moved the champion: leave their choice alone
    previous = version_for_alias(client, settings, settings.previous_alias)
    if previous is None:
        client.delete_registered_model_alias(name, settings.champion_alias)
        return None
    client.set_registered_model_alias(name, settings.champion_alias, previous)
    if restore_previous and str(restore_previous) not in (previous, str(failed_version)):
        client.set_registered_model_alias(name, settings.previous_alias, str(restore_previous))
    else:
        client.delete_registered_model_alias(name, settings.previous_alias)
    log.info("rolled %s @%s back from %s to %s", name, settings.champion_alias, failed_version, previous)
    return previous
