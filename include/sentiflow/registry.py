"""The one registry module: client construction, "not found", versions with their run metrics, alias moves.

The DAG, the model server and its web page all use it. Selection reads metrics from *runs*
(``search_model_versions`` cannot filter or sort by metrics); a release only moves aliases (``champion`` is
served, ``previous`` is kept for rollback), never copies models: promotion and rollback are
``promote``/``restore_aliases`` here, called only by the pipeline's release (``sentiflow.release.flow``, which
adds its bookkeeping around them; a manual release is a run of the release DAG), and every model-server
replica follows ``champion`` with a read-only identity.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sentiflow.names import TAG_GATE_PREFIX, TAG_MODEL_FAMILY, TAG_ROLLED_BACK, lower_is_better
from sentiflow.settings.components import MLflowSettings

if TYPE_CHECKING:  # mlflow ships its types (``py.typed``); importing it at runtime costs seconds
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A registered model version and the metrics of the run that produced it."""

    version: str
    run_id: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    family: str | None = None

    def value(self, metric: str) -> float | None:
        """The metric's value, or None when it is missing or not a finite number."""
        raw = self.metrics.get(metric)
        if raw is None:
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None


class SelectionError(ValueError):
    """No candidate can be chosen (none given, or none logged the selection metric)."""


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def pick_best(candidates: Iterable[Candidate], metric: str) -> Candidate:
    """The candidate with the best value of ``metric``: the gate's choice and the web page's "best".

    A pure function of plain values (callers read metrics from runs), so every rule is unit-tested directly.
    Candidates that did not log the metric (or logged NaN) are skipped, not treated as zero. Ties go to the
    newest version (the highest number): it was trained on the freshest data. Whether the chosen version
    may replace the champion is ``gate.judge``'s question.
    """
    pool = list(candidates)
    if not pool:
        raise SelectionError(f"no model versions to select from (selection metric {metric!r})")
    scored = [(value, c) for c in pool if (value := c.value(metric)) is not None]
    if not scored:
        logged = sorted({name for c in pool for name in c.metrics})
        raise SelectionError(
            f"none of versions {', '.join(c.version for c in pool)} logged metric {metric!r}; "
            f"metrics they logged: {', '.join(logged) or 'none'}"
        )
    sign = -1.0 if lower_is_better(metric) else 1.0
    return max(scored, key=lambda vc: (sign * vc[0], _version_key(vc[1].version)))[1]


def decision_from_tags(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The ``gate.*`` tags of a run as a dict (the web page's decision column), or None without any."""
    found = {k[len(TAG_GATE_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_GATE_PREFIX)}
    return found or None


__all__ = ["TAG_ROLLED_BACK"]  # re-exported: the tag written when a version is rolled back


def mlflow_client(settings: MLflowSettings | None = None) -> MlflowClient:
    """A client as ``settings.username`` when set (an Airflow connection's login), else as the process."""
    from mlflow import MlflowClient

    from sentiflow.security.mlflow_auth import MlflowIdentity, client_for

    settings = settings or MLflowSettings()
    identity = MlflowIdentity.of(settings.username, settings.password)
    if identity is not None:
        return client_for(settings.tracking_uri, identity)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


class ModelNotFoundError(LookupError):
    """The registry has no such registered model, version or alias."""


class RegistryUnavailableError(RuntimeError):
    """The MLflow registry could not be reached or answered with an error other than "not found"."""


def is_not_found(exc: Exception) -> bool:
    """Whether an ``MlflowException`` means "no such model, version or alias" (not "registry down").

    MLflow answers ``RESOURCE_DOES_NOT_EXIST`` for a missing model or version and
    ``INVALID_PARAMETER_VALUE`` ("... alias ... not found") for a missing alias. Connection errors are not
    ``MlflowException``s, so a registry that cannot be reached never reads as "no champion".
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    code = getattr(exc, "error_code", "") or ""
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return True
    return code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()


def _candidate(client: MlflowClient, model_version: ModelVersion) -> Candidate:
    run_id = model_version.run_id
    if not run_id:
        raise SelectionError(f"version {model_version.version} of {model_version.name!r} has no run to read")
    run = client.get_run(run_id)
    return Candidate(
        version=str(model_version.version),
        run_id=run_id,
        metrics=dict(run.data.metrics),
        family=run.data.tags.get(TAG_MODEL_FAMILY),
    )


def candidates_for_versions(
    client: MlflowClient, model_name: str, versions: Iterable[str]
) -> list[Candidate]:
    return [_candidate(client, client.get_model_version(model_name, str(v))) for v in dict.fromkeys(versions)]


def all_candidates(client: MlflowClient, model_name: str) -> list[Candidate]:
    """Every version of the registered model (``selection_scope=all_versions``), except rolled-back ones.

    A version whose release failed (tagged ``TAG_ROLLED_BACK``) is never chosen again on its own; a user
    who names it (``candidates_for_versions``) still can.
    """
    versions = client.search_model_versions(f"name = '{model_name}'")
    kept = [v for v in versions if TAG_ROLLED_BACK not in v.tags]
    if len(kept) < len(versions):
        log.info("left out %d rolled-back version(s) of %s", len(versions) - len(kept), model_name)
    return [_candidate(client, v) for v in kept]


def version_for_alias(client: MlflowClient, settings: MLflowSettings, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(settings.registered_model_name, alias).version)
    except Exception as exc:  # MlflowException: no such alias, or no such registered model yet
        if is_not_found(exc):
            return None
        raise


def alias_versions(client: MlflowClient, settings: MLflowSettings) -> dict[str, str]:
    """Every alias of the registered model and the version it names, in one registry request; empty when
    the model does not exist. ``RegistryUnavailableError`` on any other failure."""
    name = settings.registered_model_name
    try:
        model = client.get_registered_model(name)
    except Exception as exc:
        if is_not_found(exc):
            return {}
        raise RegistryUnavailableError(
            f"cannot read model {name!r} in registry {settings.tracking_uri}: {exc}"
        ) from exc
    return {str(alias): str(version) for alias, version in (model.aliases or {}).items()}


def champion(client: MlflowClient, settings: MLflowSettings) -> Candidate | None:
    """The current champion with its run's metrics, or None before the first promotion."""
    version = version_for_alias(client, settings, settings.champion_alias)
    if version is None:
        return None
    return _candidate(client, client.get_model_version(settings.registered_model_name, version))


@dataclass(frozen=True)
class PriorAliases:
    """Where ``champion`` and ``previous`` pointed before ``candidate`` was promoted; a rollback restores it.

    ``promote`` returns it; the DAG's release keeps it in a registered-model tag (JSON) and in XCom.
    """

    candidate: str
    champion: str | None
    previous: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PriorAliases:
        data = json.loads(text)
        return cls(
            candidate=str(data["candidate"]),
            champion=None if data.get("champion") is None else str(data["champion"]),
            previous=None if data.get("previous") is None else str(data["previous"]),
        )


def current_aliases(client: MlflowClient, settings: MLflowSettings, candidate: str) -> PriorAliases:
    """The aliases now, as the starting point of promoting ``candidate``."""
    return PriorAliases(
        candidate=str(candidate),
        champion=version_for_alias(client, settings, settings.champion_alias),
        previous=version_for_alias(client, settings, settings.previous_alias),
    )


def set_alias(client: MlflowClient, settings: MLflowSettings, alias: str, version: str | None) -> None:
    """Point ``alias`` at ``version``; ``None`` removes the alias (when it exists)."""
    name = settings.registered_model_name
    if version is None:
        if version_for_alias(client, settings, alias) is not None:
            client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, str(version))


def promote(client: MlflowClient, settings: MLflowSettings, version: str) -> PriorAliases:
    """Make ``version`` the champion; the old champion becomes ``previous`` (the rollback target).

    Returns the aliases from before, which ``restore_aliases`` puts back if the release fails.
    """
    prior = current_aliases(client, settings, version)
    if prior.champion == prior.candidate:
        return prior
    name = settings.registered_model_name
    if prior.champion is not None:
        client.set_registered_model_alias(name, settings.previous_alias, prior.champion)
    client.set_registered_model_alias(name, settings.champion_alias, prior.candidate)
    log.info(
        "promoted %s version %s to @%s (previous: %s)", name, version, settings.champion_alias, prior.champion
    )
    return prior


def put_back(client: MlflowClient, settings: MLflowSettings, prior: PriorAliases) -> None:
    """``champion`` and ``previous`` exactly where ``prior`` recorded them (no tags, no checks)."""
    set_alias(client, settings, settings.champion_alias, prior.champion)
    set_alias(client, settings, settings.previous_alias, prior.previous)


def restore_aliases(
    client: MlflowClient, settings: MLflowSettings, prior: PriorAliases, reason: str
) -> str | None:
    """Undo the promotion of ``prior.candidate``, which failed: tag it with the reason, put ``champion`` and
    ``previous`` back exactly where ``prior`` recorded them (``champion`` removed when the first champion
    failed, so nothing claims to be a good model).

    Returns None when restored, or a sentence saying why not: someone moved ``champion`` elsewhere meanwhile,
    and their choice is left alone. The DAG's rollback uses it.
    """
    name = settings.registered_model_name
    client.set_model_version_tag(name, prior.candidate, TAG_ROLLED_BACK, reason[:5000])
    current = version_for_alias(client, settings, settings.champion_alias)
    if current not in (prior.candidate, prior.champion):
        return f"champion was moved to {current} meanwhile by someone else; left alone"
    put_back(client, settings, prior)
    log.info(
        "rolled %s @%s back from %s to %s", name, settings.champion_alias, prior.candidate, prior.champion
    )
    return None


# --- reading versions (the server and its web page) --------------------------------------------------------
def get_version(
    client: MlflowClient, settings: MLflowSettings, *, version: str | None = None, alias: str | None = None
) -> ModelVersion:
    """The registry's ``ModelVersion`` for a version number or an alias, with errors that name the registry.

    ``ModelNotFoundError`` when there is no such version or alias, ``RegistryUnavailableError`` otherwise.
    """
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    name = settings.registered_model_name
    where = f"model {name!r} in registry {settings.tracking_uri}"
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except Exception as exc:
        if is_not_found(exc):
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise ModelNotFoundError(f"{what} of {where} not found") from exc
        raise RegistryUnavailableError(f"cannot read {where}: {exc}") from exc


def run_metrics(
    client: MlflowClient, run_id: str | None, keys: Iterable[str] | None = None
) -> dict[str, float]:
    """The metrics of a version's run (only ``keys`` when given); empty when the run cannot be read."""
    if not run_id:
        return {}
    wanted = None if keys is None else set(keys)
    try:
        data = client.get_run(run_id).data
    except Exception:  # a deleted run leaves its version usable, without metrics
        log.warning("could not read metrics of run %s", run_id, exc_info=True)
        return {}
    return {k: float(v) for k, v in data.metrics.items() if wanted is None or k in wanted}


def version_rows(client: MlflowClient, model_name: str, *, max_results: int = 200) -> list[dict[str, Any]]:
    """Every version (newest first) with its run's metrics, family, dataset source and snapshot, the gate's
    decision (``gate.*`` tags), date and aliases.

    An unknown registered model is an empty list; other registry errors raise ``RegistryUnavailableError``.
    """
    from datetime import UTC, datetime

    from sentiflow import names

    try:
        versions = client.search_model_versions(f"name = '{model_name}'", max_results=max_results)
    except Exception as exc:
        if is_not_found(exc):
            return []
        raise RegistryUnavailableError(f"cannot list the versions of model {model_name!r}: {exc}") from exc
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        run_tags: dict[str, str] = {}
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                metrics = {k: float(v) for k, v in run.data.metrics.items()}
                run_tags = dict(run.data.tags)
            except Exception:
                log.warning("could not read run %s of version %s", mv.run_id, mv.version, exc_info=True)
        version_tags = mv.tags
        created = mv.creation_timestamp
        rows.append(
            {
                "version": str(mv.version),
                "run_id": mv.run_id,
                "family": version_tags.get(names.TAG_MODEL_FAMILY) or run_tags.get(names.TAG_MODEL_FAMILY),
                "dataset_source": run_tags.get(names.TAG_DATASET),
                "dataset_uri": run_tags.get(names.TAG_DATASET_MANIFEST),
                "decision": decision_from_tags(run_tags),
                "created_at": None
                if created is None
                else datetime.fromtimestamp(created / 1000, UTC).isoformat(),
                "aliases": list(mv.aliases),
                "metrics": metrics,
            }
        )
    return rows
