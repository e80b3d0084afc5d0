"""End to end on datasets built here: three classes with ids -1/0/1, a dataset change, a second model.

``sentiment_pipeline`` under ``dag.test()`` with the real services (S3, MLflow, the model server under
gunicorn) and the TF-IDF baseline only (``train_transformer`` off: seconds per run). The tests run in file
order and share the registry:

1. a binary model is forced in as champion; a three-class run is then *not comparable* with it (kept,
   and the reason says why); a person then forces its version in through the manual release DAG
   (``sentiment_release``, with a written reason recorded on the version and in its signed approval): it
   is deployed, the inference check samples cases of all three classes from the test snapshot, the server
   answers with the three labels, and a 'wrong' flag with the right label goes through the web page's API;
2. the dataset changes: the gate scores the (three-class) champion on the new run's validation rows, and
   the numbers equal the champion's own pyfunc on those rows, not its logged metric;
3. ``registered_model_name``: a release into another registered model promotes there and leaves the served
   model alone (the release tasks alone, on a version registered there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from sentiflow import names
from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.security.approval import Statement
from sentiflow.settings.components import MLflowSettings
from tests.dagrun import run_dag

pytestmark = pytest.mark.slow
THREE = ["negative", "neutral", "positive"]
#: Words that carry each class; v2 swaps half of them for synonyms (the dataset changes, the task does not).
VOCAB = {
    1: {-1: ["awful", "terrible", "boring", "dreadful"], 0: ["okay", "average", "ordinary", "plain"],
        1: ["wonderful", "brilliant", "lovely", "great"]},
    2: {-1: ["awful", "terrible", "dismal", "tedious"], 0: ["okay", "average", "middling", "so-so"],
        1: ["wonderful", "brilliant", "superb", "delightful"]},
}  # fmt: skip
FILLER = ["the", "a", "film", "story", "cast", "plot", "scene", "music", "it", "was", "and", "with", "some"]


def dataset(folder: Path, version: int, seed: int, n_train: int = 150, n_val: int = 45) -> Path:
    """Hub layout (``data/train-00000-of-00001.parquet`` + validation, no test), labels -1/0/1."""

    def rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
        labels = [(-1, 0, 1)[i % 3] for i in range(n)]
        texts = [
            " ".join(rng.permutation(list(rng.choice(VOCAB[version][y], 2)) + list(rng.choice(FILLER, 5))))
            for y in labels
        ]
        return pd.DataFrame({"text": texts, "label": labels})

    rng = np.random.default_rng(seed)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows(n_train, rng).to_parquet(data / "train-00000-of-00001.parquet")
    rows(n_val, rng).to_parquet(data / "validation-00000-of-00001.parquet")
    return folder


def binary_dataset(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["pos", "neg"] * 60
    words = {"pos": VOCAB[1][1], "neg": VOCAB[1][-1]}
    texts = [" ".join(list(rng.choice(words[y], 2)) + list(rng.choice(FILLER, 5))) for y in labels]
    # copies of the first reviews at the end: with small parts (SMALL_PARTS) they repeat across parts
    texts, labels = texts + [t.upper() for t in texts[:30]], labels + labels[:30]
    pd.DataFrame({"review": texts, "sentiment": labels}).to_csv(folder / "train.csv", index=False)
    return folder


#: The release tasks alone, for a version registered before the run.
RELEASE_DAGS = Path(__file__).resolve().parent / "dags"
#: 20 rows a part: the binary dataset's splits become several parts each, cleaned by several mapped tasks.
SMALL_PARTS = {"SENTIFLOW_DATA_PART_ROWS": "20"}


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    localstack.airflow_init(stack)
    supervisor.start(stack, localstack.services(stack)["model-server"])
    root = tmp_path_factory.mktemp("datasets")
    try:
        yield {
            "stack": stack,
            "binary": binary_dataset(root / "binary"),
            "three": dataset(root / "three", version=1, seed=1),
            "three_v2": dataset(root / "three_v2", version=2, seed=2),
        }
    finally:
        supervisor.stop(stack, "model-server")


def conf(dataset_dir: Path, **overrides) -> dict:
    return {
        "dataset": str(dataset_dir),
        "train_transformer": False,
        "run_baseline": True,
        "train_backend": "local",
        "use_feedback": False,
        "selection_metric": "val_f1",
        "check_cases_per_class": 3,
        **overrides,
    }


def champion_version(client, name: str | None = None) -> str | None:
    aliases = client.get_registered_model(name or MLflowSettings().registered_model_name).aliases
    return str(aliases["champion"]) if "champion" in aliases else None


def test_three_classes_not_comparable_then_forced_served_checked_and_flagged(env) -> None:
    from sentiflow import registry
    from sentiflow.serving_client import ModelServerClient

    stack = env["stack"]
    client = registry.mlflow_client(MLflowSettings())
    server = ModelServerClient(stack.server_url, stack.server_token)

    binary = run_dag("sentiment_pipeline", conf(env["binary"], force_promote=True), env=SMALL_PARTS)
    assert binary["state"] == "success", binary["tasks"]
    # clean ran as mapped tasks under dag.test(): one per raw part, a rewrite for each part holding
    # copies of an earlier part's texts, and the split has no copy left
    from sentiflow.data.snapshot import read_manifest, read_split
    from sentiflow.storage import ObjectStore

    raw = read_manifest(ObjectStore(), binary["xcom"]["collect"])
    parts = sum(len(split.parts) for split in raw.splits.values())
    assert len(raw.splits["train"].parts) > 2 and binary["mapped"]["clean_part"] == ["success"] * parts
    assert binary["mapped"]["clean_rewrite"] and set(binary["mapped"]["clean_rewrite"]) == {"success"}
    cleaned = read_manifest(ObjectStore(), binary["xcom"]["clean"])
    assert cleaned.dropped["train"]["duplicate_text"] > 0 and cleaned.notes["cleaned_by"]
    assert not read_split(ObjectStore(), cleaned, "train")["text"].duplicated().any()
    binary_version = binary["xcom"]["promote"]["version"]
    assert server.model()["label_names"] == ["negative", "positive"]

    # a three-class challenger against the binary champion: no number compares them
    kept = run_dag("sentiment_pipeline", conf(env["three"]))
    assert kept["state"] == "success", kept["tasks"]
    assert kept["tasks"]["keep_champion"] == "success" and kept["tasks"]["promote"] == "skipped"
    assert kept["tasks"]["train_local"] == "skipped" and kept["tasks"]["train_baseline"] == "success"
    assert "champion kept" in kept["xcom"]["keep_champion"]["reason"]
    decision = kept["xcom"]["select_best.decision"]
    assert decision["comparable"] is False and "not comparable" in decision["reason"]
    assert "force_promote" in decision["reason"] and "registered_model_name" in decision["reason"]
    tags = client.get_run(decision["candidate_run_id"]).data.tags
    assert tags["gate.comparable"] == "False" and tags["gate.promote"] == "False"
    assert champion_version(client) == binary_version

    # forced by a person: the manual release DAG on the version the kept run registered, with a written
    # reason; promoted, deployed, checked with cases of all three classes from that run's test snapshot
    trained = kept["xcom"]["train_baseline"]
    reason = "the three-class model replaces the binary one on purpose"
    forced = run_dag(
        names.RELEASE_DAG,
        {
            names.RELEASE_VERSION: str(trained["model_version"]),
            names.RELEASE_REQUESTED_BY: "alice",
            names.FORCE_PROMOTE: True,
            names.FORCE_REASON: reason,
            "selection_metric": "val_f1",
            "check_cases_per_class": 3,
        },
    )
    assert forced["state"] == "success", forced["tasks"]
    version = forced["xcom"]["promote"]["version"]
    assert version == str(trained["model_version"])
    decision = forced["xcom"]["select_best.decision"]
    assert (
        decision["promote"] is True
        and decision["comparable"] is False
        and "promotion forced" in decision["reason"]
    )
    assert (decision["requested_by"], decision["force_reason"]) == ("alice", reason)
    tags = client.get_model_version(MLflowSettings().registered_model_name, version).tags
    assert tags[names.TAG_RELEASE_REQUESTED_BY] == "alice" and tags[names.TAG_RELEASE_FORCE_REASON] == reason
    approved = Statement.model_validate_json(tags[names.TAG_APPROVAL])  # what every replica checks
    assert approved.approved and approved.version == version
    assert "at the request of alice" in approved.reason and f"forced: {reason}" in approved.reason
    manifest = read_manifest(ObjectStore(), kept["xcom"]["collect"])
    assert manifest.label_names == THREE and manifest.source["label_ids"] == {"-1": 0, "0": 1, "1": 2}
    assert "carved" in manifest.source["split_origin"]["test"]
    check = forced["xcom"]["inference_check"]
    assert check["passed"] and check["cases"] == 9 and check["model_version"] == version
    run = client.get_run(forced["xcom"]["select_best.decision"]["candidate_run_id"])
    assert check["required_accuracy"] == pytest.approx(max(0.0, run.data.metrics["test_accuracy"] - 0.2))
    report = pd.read_csv(
        __import__("io").BytesIO(ObjectStore().read_location(check["report_uri"] + "/predictions.csv"))
    )
    assert set(report["expected"]) == set(THREE)
    info = server.model()
    assert str(info["version"]) == version and info["label_names"] == THREE

    # the web page's API: predict, then flag the answer wrong with the right label
    text = "okay average plain film"
    body = requests.post(f"{stack.server_url}/predict", json={"texts": [text]}, timeout=60).json()
    prediction = body["predictions"][0]
    assert prediction["label"] in THREE and set(prediction["scores"]) == set(THREE)
    right = next(label for label in THREE if label != prediction["label"])
    before = requests.get(f"{stack.server_url}/ui/api/feedback/daily?days=1", timeout=30).json()
    flag = {
        "text": text,
        "predicted_label": prediction["label"],
        "correct": False,
        "true_label": right,
        "model_version": str(body["model_version"]),
    }
    if prediction.get("prediction_id"):  # signed predictions (the server may require citing one)
        flag["prediction_id"] = prediction["prediction_id"]
    response = requests.post(f"{stack.server_url}/feedback", json=flag, timeout=30)
    assert response.status_code == 201, response.text
    after = requests.get(f"{stack.server_url}/ui/api/feedback/daily?days=1", timeout=30).json()
    assert after["days"][-1]["wrong"] == before["days"][-1]["wrong"] + 1
    exported = ModelServerClient(stack.server_url, stack.reviewer_token).feedback_frame()
    row = exported[exported["text"] == text].iloc[-1]
    assert row["true_label"] == right and not bool(row["correct"])


def test_a_dataset_change_rescores_the_champion_on_the_new_rows(env) -> None:
    import mlflow.pyfunc

    from sentiflow import registry
    from sentiflow.gate.behaviour import load_cases
    from sentiflow.gate.scoring import validation_rows
    from sentiflow.storage import ObjectStore
    from sentiflow.train.metrics import classification_metrics

    client = registry.mlflow_client(MLflowSettings())
    name = MLflowSettings().registered_model_name
    champion = champion_version(client)
    champion_run = client.get_model_version(name, champion).run_id
    logged = client.get_run(champion_run).data.metrics[names.VAL_F1]

    result = run_dag("sentiment_pipeline", conf(env["three_v2"]))
    assert result["state"] == "success", result["tasks"]
    decision = result["xcom"]["select_best.decision"]
    new_rows = result["xcom"]["training_data"]
    assert decision["champion_version"] == champion and decision["comparable"] is True
    assert (
        decision["champion_scored_on"]
        == new_rows
        != client.get_run(champion_run).data.tags[names.TAG_DATASET_MANIFEST]
    )
    # the champion's number is its own pyfunc on the new validation rows, not what it logged on its own
    texts, labels, label_names = validation_rows(ObjectStore(), new_rows)
    frame = mlflow.pyfunc.load_model(f"models:/{name}/{champion}").predict(texts)
    probs = frame[[f"score_{n}" for n in label_names]].to_numpy()
    rescored = classification_metrics("val", labels, probs)[names.VAL_F1]
    assert decision["champion_value"] == pytest.approx(rescored)
    assert decision["champion_value"] != pytest.approx(logged)
    low, high = decision["difference_ci_low"], decision["difference_ci_high"]
    assert low <= decision["difference"] <= high and decision["confidence"] == 0.95
    # both models also predicted the behavioural cases (three classes: the neutral ones too)
    assert decision["behaviour_cases"] == len(load_cases()) and decision["behaviour_skipped"] is None
    no_worse = decision["behaviour_failed"] <= decision["champion_behaviour_failed"]
    assert decision["promote"] == (low > 0 and no_worse)
    assert result["tasks"]["promote" if decision["promote"] else "keep_champion"] == "success"
    tags = client.get_run(decision["candidate_run_id"]).data.tags
    assert tags["gate.champion_scored_on"] == new_rows and float(tags["gate.difference_ci_low"]) == (
        pytest.approx(low, rel=1e-5)
    )


def test_another_registered_model_promotes_there_and_leaves_the_server_alone(env) -> None:
    """The release tasks alone (``tests/e2e/dags/release_registered_version.py``) on a version registered in
    another model: what a run with ``registered_model_name`` hands its release."""
    from sentiflow import registry
    from sentiflow.serving_client import ModelServerClient
    from tests.devserver import own_registered_model, register_tfidf_versions

    stack = env["stack"]
    client = registry.mlflow_client(MLflowSettings())
    served = str(ModelServerClient(stack.server_url, stack.server_token).model()["version"])
    default_champion = champion_version(client)
    with own_registered_model("sentiflow-binary-demo") as other:
        (version,) = register_tfidf_versions(1, metrics=[{names.VAL_F1: 0.8}])
    run_id = client.get_model_version(other, version).run_id

    result = run_dag(
        "release_registered_version",
        {
            "registered_version": version,
            "registered_run_id": run_id,
            "registered_model_name": other,
            "selection_metric": names.VAL_F1,
        },
        env={"AIRFLOW__CORE__DAGS_FOLDER": str(RELEASE_DAGS)},
    )
    assert result["state"] == "success", result["tasks"]
    decision = result["xcom"]["select_best.decision"]
    assert decision["registered_model_name"] == other and decision["candidate_version"] == version
    assert result["tasks"]["promote"] == "success"
    assert result["tasks"]["deploy"] == "skipped" and result["tasks"]["inference_check"] == "skipped"
    assert champion_version(client, other) == version
    assert champion_version(client) == default_champion
    assert str(ModelServerClient(stack.server_url, stack.server_token).model()["version"]) == served
