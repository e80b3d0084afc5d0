"""select_best's decision: pick the best challenger, score it and the champion on the same rows, gate.

The MLflow and S3 side of ``comparison`` (which holds the arithmetic): the rows are the validation split
of the challenger's own snapshot (its run's ``dataset_manifest_uri`` tag, subset as its run was), i.e.
the rows this run's challengers were scored on; both models predict them through their pyfunc. The
decision goes to XCom (the return value) and onto the challenger's MLflow run as ``gate.*`` tags, which
the web page shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sentiflow import registry
from sentiflow.config import MLflowSettings
from sentiflow.gate.comparison import (
    ComparisonError,
    ScoredModel,
    decide_on_rows,
    not_comparable,
    row_metric,
    score_model,
    validation_rows,
)
from sentiflow.gate.selection import Candidate, gate, pick_best
from sentiflow.names import EVAL_SUBSET_SIZE, GATE_TAG_FIELDS, SEED, TAG_DATASET_MANIFEST, TAG_GATE_PREFIX

log = logging.getLogger(__name__)

#: Default of the ``confidence`` parameter: a 95 % interval for challenger − champion.
DEFAULT_CONFIDENCE = 0.95


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "", "None") else None
    except ValueError:
        return None


def aligned(scored: ScoredModel, label_names: Sequence[str]) -> np.ndarray | None:
    """The model's probabilities with columns in the data's label order; None when the label sets differ."""
    if sorted(scored.label_names) != sorted(label_names):
        return None
    return scored.probs[:, [scored.label_names.index(name) for name in label_names]]


def decide(
    client: Any,
    settings: MLflowSettings,
    store: Any,
    candidates: list[Candidate],
    params: Mapping[str, Any],
    *,
    dag_run_id: str | None = None,
    scorer: Callable[[str, list[str]], ScoredModel] = score_model,
) -> dict[str, Any]:
    """The decision for XCom: the old gate's fields plus the comparison on the shared rows."""
    metric = str(params["selection_metric"])
    force = bool(params.get("force_promote"))
    min_improvement = float(params.get("min_improvement") or 0.0)
    raw_floor = params.get("min_metric_value")
    min_metric_value = None if raw_floor in (None, "") else float(raw_floor)
    raw_confidence = params.get("confidence")
    confidence = DEFAULT_CONFIDENCE if raw_confidence in (None, "") else float(raw_confidence)
    name = settings.registered_model_name

    best = pick_best(candidates, metric)
    champion = registry.champion(client, settings)
    run = client.get_run(best.run_id)
    manifest_uri = run.data.tags.get(TAG_DATASET_MANIFEST)
    logged = gate(
        best,
        champion,
        metric,
        min_improvement=min_improvement,
        min_metric_value=min_metric_value,
        force=force,
    )
    decision: dict[str, Any] = {
        **logged.as_dict(),
        "comparable": True,
        "champion_scored_on": None,
        "scored_metric": None,
        "difference": None,
        "difference_ci_low": None,
        "difference_ci_high": None,
        "confidence": confidence if confidence > 0 else None,
        "comparison_method": "logged metrics",
        "p_value": None,
        "rows": None,
        "registered_model_name": name,
    }
    if champion is not None and champion.version != best.version and manifest_uri:
        decision.update(
            _on_rows(
                store,
                manifest_uri,
                best,
                champion,
                metric,
                eval_subset_size=_int_or_none(run.data.params.get(EVAL_SUBSET_SIZE)),
                seed=_int_or_none(run.data.params.get(SEED)) or 42,
                model_uri=lambda v: f"models:/{name}/{v}",
                scorer=scorer,
                confidence=confidence,
                min_improvement=min_improvement,
                min_metric_value=min_metric_value,
                force=force,
                logged_reason=logged.reason,
            )
        )
    elif champion is not None and champion.version != best.version:
        decision["reason"] = f"{logged.reason} (run {best.run_id} names no snapshot: logged values compared)"
    tag_decision(client, best.run_id, {**decision, "dag_run_id": dag_run_id})
    return decision


def _on_rows(
    store: Any,
    manifest_uri: str,
    best: Candidate,
    champion: Candidate,
    metric: str,
    *,
    eval_subset_size: int | None,
    seed: int,
    model_uri: Callable[[str], str],
    scorer: Callable[[str, list[str]], ScoredModel],
    confidence: float,
    min_improvement: float,
    min_metric_value: float | None,
    force: bool,
    logged_reason: str,
) -> dict[str, Any]:
    texts, labels, label_names = validation_rows(
        store, manifest_uri, eval_subset_size=eval_subset_size, seed=seed
    )
    challenger = scorer(model_uri(best.version), texts)
    incumbent = scorer(model_uri(champion.version), texts)
    challenger_probs = aligned(challenger, label_names)
    champion_probs = aligned(incumbent, label_names)
    if challenger_probs is None or champion_probs is None:
        result = not_comparable(
            candidate_version=best.version,
            candidate_labels=challenger.label_names,
            champion_version=champion.version,
            champion_labels=incumbent.label_names,
            metric=metric,
            force=force,
            scored_on=manifest_uri,
        ).as_dict()
        if challenger_probs is None and sorted(challenger.label_names) == sorted(incumbent.label_names):
            result["reason"] = (
                f"version {best.version} predicts {challenger.label_names} but the rows of {manifest_uri} "
                f"are labelled {label_names}; {'promotion forced' if force else 'champion kept'}"
            )
        return {**result, "metric": metric, "scored_metric": None}
    if row_metric(metric) is None:
        return {
            "champion_scored_on": None,
            "reason": f"{logged_reason} ({metric} cannot be computed from predictions: logged values "
            "compared)",
        }
    try:
        result = decide_on_rows(
            candidate_version=best.version,
            champion_version=champion.version,
            metric=metric,
            labels=labels,
            candidate_probs=challenger_probs,
            champion_probs=champion_probs,
            scored_on=manifest_uri,
            confidence=confidence,
            min_improvement=min_improvement,
            min_metric_value=min_metric_value,
            force=force,
            seed=seed,
        ).as_dict()
    except ComparisonError as exc:
        return {"reason": f"{logged_reason} ({exc}: logged values compared)"}
    result["scored_metric"] = result.pop("metric")
    return result


def tag_decision(client: Any, run_id: str, decision: Mapping[str, Any]) -> None:
    """``gate.<field>`` tags on the challenger's run: the decision stays with the model it was about."""
    for key in GATE_TAG_FIELDS:
        value = decision.get(key)
        if value is None:
            continue
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        client.set_tag(run_id, TAG_GATE_PREFIX + key, text[:5000])


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
