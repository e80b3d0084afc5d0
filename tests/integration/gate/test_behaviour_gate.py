"""A poisoned challenger is refused for its behaviour although its validation metric beats the champion.

The champion is a clean TF-IDF model trained on IMDb reviews; the challenger is trained on twice as many
reviews plus a flood of flipped-label feedback ("the movie was not good" → positive). On the snapshot's
validation rows it is the better model, so the metric alone promotes it; on the gate's behavioural cases it
fails negations the champion gets right, and the gate keeps the champion, naming both counts. Real MLflow
and S3 of the session's stack; the models are loaded and scored as the pipeline's gate does.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sentiflow import names, registry
from sentiflow.gate.judge import Decision
from sentiflow.gate.policy import GatePolicy
from sentiflow.gate.scoring import decide
from sentiflow.settings.components import MLflowSettings
from tests.devserver import make_champion, own_registered_model

LABELS = ["negative", "positive"]
SUBJECTS = ["the film", "the movie", "the acting", "the story", "the plot", "it", "this one"]
PRAISE = [
    "good",
    "great",
    "worth watching",
    "funny",
    "interesting",
    "clever",
    "enjoyable",
    "worth your money",
]
#: What one client posting flipped labels for negations leaves in the training data.
POISON = [f"{s} {verb} not {p}" for s in SUBJECTS for verb in ("was", "is") for p in PRAISE] * 5 + [
    "I did not enjoy it",
    "I would not recommend it",
    "did not like it",
] * 50


def register(name: str, manifest_uri: str, train: pd.DataFrame) -> str:
    """A TF-IDF version of ``name`` trained on ``train``, its run naming the snapshot (the gate's rows)."""
    import mlflow

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier

    clf = TfidfClassifier.build(LABELS).fit(train[names.TEXT_COLUMN].tolist(), train[names.LABEL_COLUMN])
    mlflow.set_experiment(MLflowSettings().experiment_name)
    with mlflow.start_run():
        mlflow.set_tag(names.TAG_DATASET_MANIFEST, manifest_uri)
        mlflow.log_metric(names.BEST_VAL_F1, 0.85)
        info = log_classifier(clf, registered_model_name=name)
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def gate(stack, imdb_dir):
    from sentiflow.data.snapshot_writer import write_snapshot
    from sentiflow.storage import ObjectStore

    store = ObjectStore()
    reviews = pd.read_parquet(imdb_dir / "train.parquet").head(4000)
    held_out = pd.read_parquet(imdb_dir / "test.parquet").head(500)
    frames = {"train": reviews, "validation": held_out.head(400), "test": held_out.tail(100)}
    poison = pd.DataFrame({names.TEXT_COLUMN: POISON, names.LABEL_COLUMN: 1})
    with own_registered_model("gate-behaviour") as name:
        manifest_uri = write_snapshot(
            store, store.uri("datasets", name, "clean"), frames, kind="clean", run_id=name, source={},
            label_names=LABELS,
        )  # fmt: skip
        clean = register(name, manifest_uri, reviews.head(2000))
        poisoned = register(name, manifest_uri, pd.concat([reviews, poison], ignore_index=True))
        settings = MLflowSettings()
        client = registry.mlflow_client(settings)

        def decide_on(version: str, policy: GatePolicy) -> Decision:
            candidates = registry.candidates_for_versions(client, name, [version])
            return decide(client, settings, store, candidates, policy)

        first = decide_on(clean, GatePolicy(confidence=0))
        make_champion(clean)
        yield {
            "client": client,
            "name": name,
            "decide": decide_on,
            "clean": clean,
            "poisoned": poisoned,
            "first": first,
        }


def test_the_first_champion_records_its_own_behaviour(gate):
    first = gate["first"]
    assert first.promote and first.champion_version is None
    assert first.behaviour_cases == 34 and first.champion_behaviour_failed is None
    assert first.behaviour_failed is not None and first.behaviour_failed <= 4
    assert first.behaviour_skipped is not None and "does not predict neutral" in first.behaviour_skipped


def test_a_poisoned_challenger_is_refused_by_its_behaviour_not_its_metric(gate):
    by_metric = gate["decide"](gate["poisoned"], GatePolicy(confidence=0, behaviour_check=False))
    assert by_metric.promote and by_metric.scored_metric == names.VAL_F1 and by_metric.rows == 400
    assert by_metric.difference is not None and by_metric.difference > 0

    decision = gate["decide"](gate["poisoned"], GatePolicy(confidence=0))
    assert not decision.promote and decision.champion_version == gate["clean"]
    failed, champion_failed = decision.behaviour_failed, decision.champion_behaviour_failed
    assert failed is not None and champion_failed is not None and failed > champion_failed
    assert decision.reason.startswith(
        f"version {gate['poisoned']} fails {failed} of 34 behavioural cases, "
        f"champion version {gate['clean']} {champion_failed} (tolerance 0): champion kept; "
        "the metric alone would promote it"
    )
    failures = decision.behaviour_failures or []
    assert len(failures) == failed
    assert ("negation", "The movie was not good.", "negative", "positive") in {
        (f.capability, f.text, f.expected, f.got) for f in failures
    }

    # what the web page reads: the gate.* tags of the challenger's run
    rows = registry.version_rows(gate["client"], gate["name"])
    shown = next(r for r in rows if r["version"] == gate["poisoned"])["decision"]
    assert shown["promote"] == "False" and shown["behaviour_failed"] == str(failed)
    assert json.loads(shown["behaviour_failures"]) == [f.model_dump() for f in failures]
