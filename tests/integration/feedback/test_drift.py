"""Drift: PSI and OOV as pure functions, the production sample and the report on the real local S3/MLflow."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from sentiflow.data.snapshot import write_snapshot
from sentiflow.feedback.alerts import ALERT_DRIFT, FeedbackAlerter
from sentiflow.feedback.drift import compute_drift, drift_report, log_drift_to_mlflow
from sentiflow.feedback.drift_metrics import SplitProfile, categorical_psi, length_psi, oov_rate
from sentiflow.feedback.production_sample import ProductionSampler, read_production_sample, text_features
from sentiflow.names import (
    DRIFT_OOV_RATE,
    DRIFT_OOV_RATE_REFERENCE,
    DRIFT_PSI_LABEL,
    DRIFT_PSI_TEXT_LENGTH,
    DRIFT_SAMPLE_ROWS,
)
from sentiflow.settings.components import AlertSettings, DriftSettings
from tests.integration.feedback.test_alerts import Receiver

LABELS = ["negative", "positive"]


# --- pure metrics ----------------------------------------------------------------------------------------
def psi(train_lengths: np.ndarray, actual: np.ndarray) -> float:
    """The report's text-length PSI of ``actual`` against a training split of these lengths."""
    profile = SplitProfile({}, np.bincount(np.asarray(train_lengths, dtype=np.int64)), Counter())
    return length_psi(profile, actual)


def test_psi_is_high_for_two_different_distributions_and_low_for_one() -> None:
    rng = np.random.default_rng(0)
    short = np.rint(rng.normal(200, 30, 5000))
    long = np.rint(rng.normal(900, 200, 5000))
    assert psi(short, long) > 1.0
    assert psi(short, np.rint(rng.normal(200, 30, 5000))) < 0.02


def test_psi_on_two_samples_of_real_reviews_is_low_and_vs_short_texts_high(imdb_dir) -> None:
    lengths = pd.read_parquet(imdb_dir / "train.parquet", columns=["text"])["text"].str.len()
    shuffled = lengths.sample(frac=1.0, random_state=1).to_numpy()
    first, second = shuffled[:5000], shuffled[5000:10000]
    assert psi(first, second) < 0.05
    assert psi(first, np.clip(second // 6, 1, None)) > 0.5  # tweets instead of reviews


def test_label_psi() -> None:
    assert categorical_psi({"neg": 500, "pos": 500}, {"neg": 48, "pos": 52}) < 0.01
    assert categorical_psi({"neg": 500, "pos": 500}, {"neg": 95, "pos": 5}) > 0.5


def _vocabulary(texts: list[str], s: DriftSettings) -> set[str]:
    return SplitProfile.from_frames([pd.DataFrame({"text": texts, "label": 0})], ["negative"]).vocabulary(s)


def test_oov_rate_uses_keyed_hashes_of_the_training_vocabulary() -> None:
    s = DriftSettings(vocab_min_count=1)
    vocab = _vocabulary(["a good film", "a bad film"], s)
    seen = text_features(["A good, bad film!"], s)["token_hashes"]
    unseen = text_features(["quantum chromodynamics lecture"], s)["token_hashes"]
    assert oov_rate(seen, vocab) == 0.0
    assert oov_rate(unseen, vocab) == 1.0
    other_key = _vocabulary(["a good film"], DriftSettings(vocab_min_count=1, hash_key="other"))
    assert oov_rate(seen, other_key) == 1.0  # hashes mean nothing without the key


def _sample(texts: list[str], labels: list[str], s: DriftSettings) -> pd.DataFrame:
    f = text_features(texts, s)
    return f.assign(ts=0.0, model_version="3", predicted_label=labels, text=None)


def test_compute_drift_separates_shifted_from_same_data(imdb_dir) -> None:
    s = DriftSettings()
    data = pd.read_parquet(imdb_dir / "test.parquet").sample(4000, random_state=0)
    from sentiflow.data.clean import clean_text

    data["text"] = clean_text(data["text"])
    frame, val, prod = data.iloc[:2000], data.iloc[2000:2500], data.iloc[2500:3500]
    train = SplitProfile.from_frames([frame], LABELS)
    same = compute_drift(
        train, [val], _sample(prod["text"].tolist(), [LABELS[x] for x in prod["label"]], s), s
    )
    shifted_texts = ["crypto moon lambo wen pump"] * 500 + ["ok"] * 500
    shifted = compute_drift(train, [val], _sample(shifted_texts, ["negative"] * 1000, s), s)

    assert same.metrics[DRIFT_PSI_TEXT_LENGTH] < 0.1 and same.metrics[DRIFT_PSI_LABEL] < 0.1
    assert shifted.metrics[DRIFT_PSI_TEXT_LENGTH] > 1.0 and shifted.metrics[DRIFT_PSI_LABEL] > 1.0
    assert same.metrics[DRIFT_OOV_RATE] < 0.1
    assert abs(same.metrics[DRIFT_OOV_RATE] - same.metrics[DRIFT_OOV_RATE_REFERENCE]) < 0.03
    assert shifted.metrics[DRIFT_OOV_RATE] > 0.4


# --- the production sample ---------------------------------------------------------------------------
def test_sampler_keeps_no_raw_text_by_default_and_is_bounded(store) -> None:
    store.ensure_bucket()
    s = DriftSettings(samples_prefix="samples-private", buffer_max_rows=3, flush_interval_s=3600)
    sampler = ProductionSampler(s, store=store)
    sampler.record(["secret one", "secret two", "three", "four"], ["positive"] * 4, "5")
    uri = sampler.flush()
    sampler.close()
    assert uri is not None and uri.startswith(f"s3://{store.settings.bucket}/samples-private/dt=")
    frame = store.get_parquet(uri)
    assert len(frame) == 3 and sampler.lost_rows == 1  # the oldest row went first
    assert frame["text"].isna().all()
    assert "secret" not in frame.to_json()
    assert frame["n_tokens"].tolist() == [2, 1, 1]
    assert list(frame["model_version"]) == ["5"] * 3


def test_sampler_raw_text_is_opt_in_and_reads_back_by_time(store) -> None:
    store.ensure_bucket()
    s = DriftSettings(samples_prefix="samples-raw", log_raw_text=True, flush_interval_s=3600)
    now = datetime.now(UTC)
    clock = iter([(now - timedelta(days=2)).timestamp(), now.timestamp()])
    sampler = ProductionSampler(s, store=store, clock=lambda: next(clock))
    sampler.record(["old text"], ["negative"], "1")
    sampler.flush()
    sampler.record(["New text!"], ["positive"], "2")
    sampler.flush()
    sampler.close()
    recent = read_production_sample(store, since=now - timedelta(days=1), settings=s)
    assert recent["text"].tolist() == ["New text!"] and recent["predicted_label"].tolist() == ["positive"]
    everything = read_production_sample(store, since=now - timedelta(days=3), settings=s)
    assert len(everything) == 2


def test_rows_of_one_request_read_back_in_the_request_order(store) -> None:
    # One request's rows share a timestamp; files of several workers arrive in any time order. Numpy's
    # default (unstable) sort then swapped rows of one request: the reader must keep the request order.
    store.ensure_bucket()
    s = DriftSettings(samples_prefix="samples-order", log_raw_text=True, flush_interval_s=3600)
    now = datetime.now(UTC).timestamp()
    stamps = iter([now - i for i in range(20)])  # newest request first, as a later worker's file would be
    sampler = ProductionSampler(s, store=store, clock=lambda: next(stamps))
    for i in range(20):
        sampler.record([f"request {i} first", f"request {i} second"], ["positive"] * 2, "1")
    sampler.flush()
    sampler.close()
    sample = read_production_sample(store, since=datetime.fromtimestamp(now - 60, UTC), settings=s)
    expected = [f"request {i} {which}" for i in reversed(range(20)) for which in ("first", "second")]
    assert sample["text"].tolist() == expected


def test_sampler_sample_rate_keeps_a_fraction(store) -> None:
    sampler = ProductionSampler(
        DriftSettings(sample_rate=0.25, flush_interval_s=3600), store=store, rng=random.Random(0)
    )
    kept = sampler.record(["t"] * 1000, ["positive"] * 1000, "1")
    assert 150 < kept < 350


# --- the report --------------------------------------------------------------------------------------
@pytest.fixture
def train_snapshot(store, imdb_dir) -> str:
    store.ensure_bucket()
    from sentiflow.data.clean import clean_text

    data = pd.read_parquet(imdb_dir / "train.parquet").sample(1500, random_state=3)
    data["text"] = clean_text(data["text"])
    return write_snapshot(
        store,
        store.uri("datasets", "drift-base", "clean"),
        {"train": data.iloc[:1000], "validation": data.iloc[1000:1300], "test": data.iloc[1300:]},
        kind="clean",
        run_id="drift-base",
        source={"type": "test"},
        label_names=LABELS,
    )


def test_drift_report_writes_html_to_s3_alerts_on_shift_and_logs_to_mlflow(
    store, train_snapshot: str, imdb_dir
) -> None:
    s = DriftSettings(samples_prefix="samples-report", flush_interval_s=3600)
    sampler = ProductionSampler(s, store=store)
    sampler.record(["wow"] * 200 + ["nope"] * 100, ["positive"] * 300, "9")  # short texts, all positive
    sampler.flush()
    sampler.close()

    receiver = Receiver()
    try:
        alerter = FeedbackAlerter(AlertSettings(webhook_url=receiver.url, webhook_backoff_s=0.05))
        result = drift_report(train_snapshot, run_id="drift-run-1", store=store, settings=s, alerter=alerter)
        assert result.metrics[DRIFT_SAMPLE_ROWS] == 300
        assert result.metrics[DRIFT_PSI_TEXT_LENGTH] > s.psi_threshold
        assert result.drifted
        assert len(receiver.bodies) == 1 and receiver.bodies[0]["kind"] == ALERT_DRIFT
        assert receiver.bodies[0]["details"]["versions"] == ["9"]
    finally:
        receiver.close()

    page = store.get_bytes(result.report_uri).decode()
    assert result.report_uri.endswith("reports/drift/drift-run-1/drift_report.html")
    assert "Drift report" in page and "data:image/png;base64," in page and train_snapshot in page
    saved = store.get_json(result.report_uri.replace("drift_report.html", "drift_metrics.json"))
    assert saved["metrics"][DRIFT_PSI_TEXT_LENGTH] == pytest.approx(result.metrics[DRIFT_PSI_TEXT_LENGTH])

    import mlflow

    run_id = log_drift_to_mlflow(result)
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.metrics[DRIFT_PSI_TEXT_LENGTH] == pytest.approx(result.metrics[DRIFT_PSI_TEXT_LENGTH])
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "drift")]
    assert "drift/drift_report.html" in artifacts


def test_drift_report_without_sample_or_shift_raises_no_alert(store, train_snapshot: str, imdb_dir) -> None:
    s = DriftSettings(samples_prefix="samples-empty")
    empty = drift_report(train_snapshot, run_id="drift-run-empty", store=store, settings=s)
    assert empty.metrics == {DRIFT_SAMPLE_ROWS: 0.0} and not empty.drifted
    assert "nothing to compare" in store.get_bytes(empty.report_uri).decode()

    reviews = pd.read_parquet(imdb_dir / "test.parquet").sample(400, random_state=5)
    sample = text_features(reviews["text"].tolist(), s).assign(
        ts=0.0, model_version="1", predicted_label=[LABELS[x] for x in reviews["label"]]
    )
    calm = drift_report(train_snapshot, run_id="drift-run-calm", store=store, settings=s, sample=sample)
    assert not calm.drifted and calm.metrics[DRIFT_PSI_TEXT_LENGTH] < s.psi_threshold
