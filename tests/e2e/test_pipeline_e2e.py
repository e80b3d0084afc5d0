"""End to end: ``sentiment_pipeline`` and ``sentiment_sweep`` against the real services.

S3 and MLflow from the ``stack`` fixture, the model server under gunicorn, training with the real entrypoint
(``train_backend=local``).

1. the golden run (``tests/e2e/conftest.py``: transformer and baseline, feedback stored in the server before
   it): the feedback rows are in the training split and in both MLflow runs; a version is champion, served,
   the inference check passes; a drift report is written;
2. the sweep: two grid points, one MLflow run and version each, then the shared select/deploy/check tail;
3. ``train_backend=kubernetes`` with no cluster: the pod's arguments rendered from the upstream outputs.

The keep-champion branch runs in ``test_release_any_labels.py``, a failed inference check's rollback in
``tests/integration/release/test_release.py``, a failed deploy's in ``test_tampered_release.py``, and a
misspelt parameter in ``test_demo_progress.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiflow import names
from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.settings.components import MLflowSettings
from tests.dagrun import run_dag
from tests.devserver import own_registered_model
from tests.e2e.conftest import FEEDBACK, GoldenRun, transformer_conf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline_env(stack, imdb_dir, offline_model):
    """The model server and every DAG run of this module on a registered model of their own: other test
    modules move ``champion`` of the session's default model (releases move the alias), and these
    tests start from "no champion yet"."""
    with own_registered_model("sentiflow-e2e"):
        localstack.airflow_init(stack)
        supervisor.start(stack, localstack.services(stack)["model-server"])
        try:
            yield stack
        finally:
            supervisor.stop(stack, "model-server")


def base_conf(imdb_dir: Path, offline_model: Path, **overrides) -> dict:
    return transformer_conf(imdb_dir, offline_model, **overrides)


def aliases(client, settings: MLflowSettings) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(settings.registered_model_name).aliases.items()}


def test_the_golden_run_trains_on_feedback_and_serves_the_champion(golden: GoldenRun) -> None:
    import mlflow
    import pandas as pd

    from sentiflow import registry
    from sentiflow.data.clean import clean_text
    from sentiflow.data.snapshot import read_manifest, read_split
    from sentiflow.serving_client import ModelServerClient
    from sentiflow.storage import ObjectStore

    settings = MLflowSettings(registered_model_name=golden.registered_model_name)
    client = registry.mlflow_client(settings)
    server = ModelServerClient(golden.server.url, golden.server.token)
    store = ObjectStore()
    first = golden.result
    assert first["state"] == "success", first["tasks"]
    assert first["tasks"]["promote"] == "success" and first["tasks"]["keep_champion"] == "skipped"

    # clean, mapped: one task per raw part (one part per split here); no copies across parts to rewrite
    assert first["mapped"]["clean_part"] == ["success"] * 3 and len(first["xcom"]["clean_part"]) == 3
    assert first["tasks"]["clean_dedup"] == "success" and first["tasks"]["clean_rewrite"] == "skipped"
    data_uri = first["xcom"]["training_data"]
    assert data_uri != first["xcom"]["clean"] and "clean-with-feedback" in data_uri
    manifest = read_manifest(store, data_uri)
    assert (
        manifest.notes[names.FEEDBACK_ROWS_USED] == 3 and manifest.notes[names.FEEDBACK_ROWS_UNLABELLED] == 1
    )
    assert (
        manifest.notes[names.FEEDBACK_ROWS_VERIFIED] == 4 and manifest.notes["feedback_rows_unverified"] == 1
    )
    assert not any("unsigned banana" in t for t in read_split(store, manifest, "train")["text"])
    train = read_split(store, manifest, "train")
    cleaned = dict(zip(clean_text(pd.Series([f[0] for f in FEEDBACK])), FEEDBACK, strict=True))
    trained = dict(zip(train["text"], train["label"], strict=False))
    for text, (_, predicted, correct, true_label) in cleaned.items():
        expected = true_label or (predicted if correct else None)
        if expected is None:
            assert text not in trained  # no true label: counted, never trained on
        else:
            assert trained[text] == manifest.label_names.index(expected)
    for split in ("validation", "test"):  # feedback never leaks into evaluation
        assert not set(cleaned) & set(read_split(store, manifest, split)["text"])

    lineage = first["xcom"]["feedback_lineage"]
    assert len(lineage["runs"]) == 2  # transformer and baseline
    for run_id in lineage["runs"]:
        run = client.get_run(run_id)
        assert run.data.metrics[names.FEEDBACK_ROWS_USED] == 3
        assert run.data.tags[names.FEEDBACK_SNAPSHOT_URI] == manifest.notes[names.FEEDBACK_SNAPSHOT_URI]
        assert run.data.tags[names.TAG_DATASET_MANIFEST] == data_uri  # trained on the merged snapshot
    feedback_rows = read_split(
        store, read_manifest(store, manifest.notes[names.FEEDBACK_SNAPSHOT_URI]), "train"
    )
    assert len(feedback_rows) == 3

    decision = first["xcom"]["select_best.decision"]
    champion = decision["candidate_version"]
    assert len(decision["candidates"]) == 2
    assert aliases(client, settings)["champion"] == champion
    assert str(server.model()["version"]) == champion
    check = first["xcom"]["inference_check"]
    assert check["passed"] and check["model_version"] == champion
    assert store.exists(check["report_uri"] + "/summary.json")

    drift = first["xcom"]["drift_report"]
    assert store.exists(drift["report_uri"])
    drift_run = mlflow.MlflowClient(settings.tracking_uri).get_run(drift["mlflow_run_id"])
    assert names.DRIFT_SAMPLE_ROWS in drift_run.data.metrics


def test_the_sweep_trains_each_grid_point_then_releases_the_best(
    pipeline_env, imdb_dir, offline_model
) -> None:
    from sentiflow import registry
    from sentiflow.serving_client import ModelServerClient

    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    server = ModelServerClient(pipeline_env.server_url, pipeline_env.server_token)

    # the sweep: two grid points → two runs and versions → select → (forced) promote → deploy → check
    # the smallest sample the tail needs (inference-check cases of both classes): two grid points train
    conf = base_conf(
        imdb_dir,
        offline_model,
        grid={"learning_rate": [5e-5, 1e-4]},
        force_promote=True,
        sample_size=120,
        eval_sample_size=60,
        train_subset_size=64,
    )
    for pipeline_only in ("run_baseline", "train_transformer"):  # not sweep params
        conf.pop(pipeline_only)
    sweep = run_dag("sentiment_sweep", conf)
    assert sweep["state"] == "success", sweep["tasks"]
    results = sweep["xcom"]["train_grid_local"]
    assert len(results) == 2 and len({r["run_id"] for r in results}) == 2
    rates = sorted(float(client.get_run(r["run_id"]).data.params[names.LEARNING_RATE]) for r in results)
    assert rates == [5e-5, 1e-4]
    decision = sweep["xcom"]["select_best.decision"]
    assert sorted(decision["candidates"]) == sorted(str(r["model_version"]) for r in results)
    champion = decision["candidate_version"]
    assert sweep["tasks"]["inference_check"] == "success"
    assert aliases(client, settings)["champion"] == champion
    assert str(server.model()["version"]) == champion


def test_the_training_pod_is_handed_this_runs_training_data_and_params(
    pipeline_env, imdb_dir, offline_model
) -> None:
    """``train_backend=kubernetes`` with no cluster here: the pod cannot start, but Airflow has rendered its
    arguments from the upstream outputs first (what a cluster would run), and the release does not move."""
    import json

    conf = base_conf(imdb_dir, offline_model, train_backend="kubernetes", run_baseline=False, sample_size=120)
    result = run_dag("sentiment_pipeline", conf, env={"AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0"})
    assert result["state"] == "failed"
    assert result["tasks"]["train_kubernetes"] == "failed"
    assert result["tasks"]["select_best"] == "upstream_failed"
    args = result["rendered"]["train_kubernetes"]["arguments"]
    manifest_uri = args[args.index("--manifest-uri") + 1]
    assert manifest_uri == result["xcom"]["training_data"] and manifest_uri.startswith("s3://")
    params = json.loads(args[args.index("--params-json") + 1])
    pushed = result["xcom"]["validate_params.transformer"]  # the runner's read of the metadata DB decodes it
    assert params == (json.loads(pushed) if isinstance(pushed, str) else pushed)
    # a form field and a train_extra key
    assert params["max_length"] == 64 and params["num_hidden_layers"] == 1
