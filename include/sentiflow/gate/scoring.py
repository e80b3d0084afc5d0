"""select_best's MLflow and S3 side: gather the evidence, ask ``judge``, record the decision on the run.

The rows are the validation split of the challenger's own snapshot (its run's ``dataset_manifest_uri`` tag,
subset as its run was), i.e. the rows this run's challengers were scored on; both models predict them through
their pyfunc, and in the same call the behavioural cases (``behaviour``). Where rows cannot decide (no
champion, the champion itself, a run that names no snapshot, a metric predictions cannot give, a metric
undefined on the rows) the logged values do, and the reason says so. The decision goes to XCom (the caller)
and onto the challenger's MLflow run as ``gate.*`` tags, which the web page shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from sentiflow import registry
from sentiflow.gate.behaviour import Answers, Case, check, load_cases
from sentiflow.gate.comparison import ComparisonError, row_metric
from sentiflow.gate.evidence import Evidence
from sentiflow.gate.judge import Decision, judge
from sentiflow.gate.policy import GatePolicy
from sentiflow.names import DEFAULT_SEED, EVAL_SUBSET_SIZE, SEED, TAG_DATASET_MANIFEST
from sentiflow.registry import Candidate, pick_best
from sentiflow.settings.components import MLflowSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from sentiflow.storage import ObjectStore

log = logging.getLogger(__name__)


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "", "None") else None
    except ValueError:
        return None


def validation_rows(
    store: ObjectStore, manifest_uri: str, *, eval_subset_size: int | None = None, seed: int = DEFAULT_SEED
) -> tuple[list[str], np.ndarray, list[str]]:
    """This run's validation texts and label ids (subset as training subsets them, with ``seed``, by default
    the trainer's: the same loader, ``train.data.load_split``) and the label names. The texts are a list:
    both models predict all of them."""
    import tempfile
    from pathlib import Path

    from sentiflow.data.snapshot import read_manifest
    from sentiflow.names import TEXT_COLUMN
    from sentiflow.train.data import label_ids, load_split

    manifest = read_manifest(store, manifest_uri)
    with tempfile.TemporaryDirectory(prefix="sentiflow-gate-") as folder:
        rows = load_split(
            store, manifest, "validation", Path(folder), subset_size=eval_subset_size, seed=seed
        )
        texts = [str(t) for t in rows.with_format("arrow")[TEXT_COLUMN].to_pylist()]
        return texts, label_ids(rows).astype(int), list(manifest.label_names)


@dataclass(frozen=True)
class ScoredModel:
    label_names: list[str]
    probs: np.ndarray


def score_model(client: MlflowClient, model_uri: str, texts: list[str]) -> ScoredModel:
    """Probabilities per label (the model's own label order) through the logged pyfunc's ``predict``.

    ``model_uri`` is ``models:/<name>/<version>``, loaded as a replica loads it (``signing.load_for_serving``,
    the version read with ``client``): the gate unpickles the champion and the challenger in the pipeline's
    own process, which holds the signing key, so a version whose files were overwritten in S3 is refused
    here too (``SignatureError``) before anything is deserialized.
    """
    import tempfile

    from sentiflow.security.signing import download_version, load_for_serving

    model_name, _, version = model_uri.removeprefix("models:/").rpartition("/")
    model_version = client.get_model_version(model_name, version)
    with tempfile.TemporaryDirectory(prefix="sentiflow-gate-") as tmp:  # removed once scored
        model = load_for_serving(model_uri, model_version, download_version(model_uri, tmp))
        label_names = list(model.unwrap_python_model().classifier.label_names)
        frame = model.predict(texts)
    probs = frame[[f"score_{name}" for name in label_names]].to_numpy(dtype=np.float64)
    return ScoredModel(label_names, probs)


def aligned(scored: ScoredModel, label_names: Sequence[str]) -> np.ndarray | None:
    """The model's probabilities with columns in the data's label order; None when the label sets differ."""
    if sorted(scored.label_names) != sorted(label_names):
        return None
    return scored.probs[:, [scored.label_names.index(name) for name in label_names]]


Scorer = Callable[["MlflowClient", str, list[str]], ScoredModel]


@dataclass(frozen=True)
class ValidationRows:
    """The challenger's validation rows (``validation_rows``) and the snapshot they come from."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    manifest_uri: str
    seed: int


def challenger_rows(client: MlflowClient, store: ObjectStore, best: Candidate) -> ValidationRows | str:
    """The validation rows of the challenger's run, or why there are none (a note for the reason)."""
    run = client.get_run(best.run_id)
    manifest_uri = run.data.tags.get(TAG_DATASET_MANIFEST)
    if not manifest_uri:
        return f"run {best.run_id} names no snapshot: logged values compared"
    seed = _int_or_none(run.data.params.get(SEED))
    seed = DEFAULT_SEED if seed is None else seed  # what a training run uses when none is given
    texts, labels, label_names = validation_rows(
        store, manifest_uri, eval_subset_size=_int_or_none(run.data.params.get(EVAL_SUBSET_SIZE)), seed=seed
    )
    return ValidationRows(texts, labels, label_names, manifest_uri, seed)


def answers(name: str, scored: ScoredModel) -> Answers:
    """A model's predicted label (its most probable) for each text it scored."""
    return Answers(name, scored.label_names, [scored.label_names[i] for i in scored.probs.argmax(axis=1)])


def gather_evidence(
    client: MlflowClient,
    store: ObjectStore,
    best: Candidate,
    champion: Candidate | None,
    metric: str,
    *,
    model_uri: Callable[[str], str],
    scorer: Scorer = score_model,
    cases: Sequence[Case] = (),
) -> Evidence:
    """Rows when both models can be scored on the challenger's rows, else the logged values (with a note);
    with ``cases``, both models' behavioural results too (the challenger's alone when there is no champion).

    Each model is loaded and predicts once: its validation rows and the cases in one ``scorer`` call.
    """
    if champion is not None and champion.version == best.version:  # judged when it became the champion
        return Evidence.logged(best, champion, metric)
    rows = None if champion is None else challenger_rows(client, store, best)
    texts = rows.texts if isinstance(rows, ValidationRows) else []
    checked = [c.text for c in cases]

    def scored(version: str) -> tuple[ScoredModel, ScoredModel] | None:
        """(its scores on the rows, on the cases), None when there is nothing to score."""
        if not texts and not checked:
            return None
        found = scorer(client, model_uri(version), texts + checked)
        n = len(texts)
        return ScoredModel(found.label_names, found.probs[:n]), ScoredModel(
            found.label_names, found.probs[n:]
        )

    challenger = scored(best.version)
    incumbent = None if champion is None else scored(champion.version)
    if rows is None:
        evidence = Evidence.logged(best, champion, metric)
    elif isinstance(rows, str):
        evidence = Evidence.logged(best, champion, metric, note=rows)
    elif challenger is None or incumbent is None or champion is None:
        note = f"{rows.manifest_uri} has no validation rows: logged values compared"
        evidence = Evidence.logged(best, champion, metric, note=note)
    else:
        evidence = _on_rows(best, champion, metric, rows, challenger[0], incumbent[0])
    if not cases or challenger is None:
        return evidence
    rival = None
    if incumbent is not None and champion is not None:
        rival = answers(f"champion version {champion.version}", incumbent[1])
    behaviour = check(cases, answers(f"version {best.version}", challenger[1]), rival)
    return replace(evidence, behaviour=behaviour)


def _on_rows(
    best: Candidate,
    champion: Candidate,
    metric: str,
    rows: ValidationRows,
    challenger: ScoredModel,
    incumbent: ScoredModel,
) -> Evidence:
    """Both models on the challenger's rows, or why not (label sets, a metric rows cannot give)."""
    challenger_probs = aligned(challenger, rows.label_names)
    champion_probs = aligned(incumbent, rows.label_names)
    if challenger_probs is None or champion_probs is None:
        return Evidence.labels_differ(
            best,
            champion,
            metric,
            candidate_labels=challenger.label_names,
            champion_labels=incumbent.label_names,
            row_labels=rows.label_names,
            scored_on=rows.manifest_uri,
        )
    if row_metric(metric) is None:
        note = f"{metric} cannot be computed from predictions: logged values compared"
        return Evidence.logged(best, champion, metric, note=note)
    try:
        return Evidence.on_rows(
            best,
            champion,
            metric,
            labels=rows.labels,
            candidate_probs=challenger_probs,
            champion_probs=champion_probs,
            scored_on=rows.manifest_uri,
            seed=rows.seed,
        )
    except ComparisonError as exc:
        return Evidence.logged(best, champion, metric, note=f"{exc}: logged values compared")


def decide(
    client: MlflowClient,
    settings: MLflowSettings,
    store: ObjectStore,
    candidates: list[Candidate],
    policy: GatePolicy,
    *,
    dag_run_id: str | None = None,
    scorer: Scorer = score_model,
) -> Decision:
    """The best candidate by the policy's metric, judged against the champion; tagged on its run."""
    name = settings.registered_model_name
    best = pick_best(candidates, policy.selection_metric)
    champion = registry.champion(client, settings)
    evidence = gather_evidence(
        client,
        store,
        best,
        champion,
        policy.selection_metric,
        model_uri=lambda v: f"models:/{name}/{v}",
        scorer=scorer,
        cases=load_cases() if policy.behaviour_check else (),
    )
    decision = judge(policy, evidence).model_copy(
        update={"registered_model_name": name, "dag_run_id": dag_run_id}
    )
    tag_decision(client, best.run_id, decision)
    return decision


def tag_decision(client: MlflowClient, run_id: str, decision: Decision) -> None:
    """``gate.<field>`` tags on the challenger's run: the decision stays with the model it was about."""
    for key, text in decision.tags().items():
        client.set_tag(run_id, key, text)
