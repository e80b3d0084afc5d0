"""Drift report: recent production predictions vs the training snapshot.

Three signals, each cheap and explainable to a non-specialist:

* **label PSI**: the share of each predicted label in production vs the label shares in training;
* **text-length PSI**: cleaned text length, binned on the training quantiles;
* **out-of-vocabulary rate**: the share of production tokens never (or rarely) seen in training, next to
  the same rate for the validation split as the "normal" reference.

The training snapshot is read batch by batch (``iter_frames``) into a ``SplitProfile``: label counts, a
histogram of text lengths and token counts, so memory grows with the vocabulary, never with the rows; the
validation split is read once more, batch by batch, for the reference OOV rate.

PSI (population stability index) = Σ (a − e) · ln(a / e) over bins; the usual reading is < 0.1 stable,
0.1–0.2 moderate, > 0.2 a real shift (``SENTIFLOW_DRIFT_PSI_THRESHOLD``). Above the threshold the report
raises an alert through the same path as wrong-prediction flags.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sentiflow.data.snapshot import iter_frames, read_manifest
from sentiflow.feedback.alerts import ALERT_DRIFT, Alert, FeedbackAlerter
from sentiflow.feedback.drift_metrics import (
    SplitProfile,
    add_histograms,
    categorical_psi,
    histogram_quantiles,
    length_psi,
    oov_counts,
    oov_rate,
    shares,
)
from sentiflow.feedback.production_sample import read_production_sample, text_features
from sentiflow.names import (
    DRIFT_OOV_RATE,
    DRIFT_OOV_RATE_REFERENCE,
    DRIFT_PSI_LABEL,
    DRIFT_PSI_TEXT_LENGTH,
    DRIFT_REPORT_URI,
    DRIFT_SAMPLE_ROWS,
    LABEL_COLUMN,
    TEXT_COLUMN,
)
from sentiflow.settings.components import AlertSettings, DriftSettings, MLflowSettings
from sentiflow.storage import ObjectStore

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger("sentiflow.drift")


@dataclass
class DriftResult:
    metrics: dict[str, float]
    training_labels: dict[str, int]
    production_labels: dict[str, int]
    report_uri: str | None = None
    alert: Alert | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.alert is not None


def compute_drift(
    train: SplitProfile,
    reference: Iterable[pd.DataFrame] | None,
    sample: pd.DataFrame,
    settings: DriftSettings | None = None,
) -> DriftResult:
    """Metrics only (no I/O): ``train`` profiles the clean training split, ``reference`` is the clean
    validation split in batches (read once, for the reference OOV rate), ``sample`` a production sample."""
    s = settings or DriftSettings()
    prod_labels = {str(k): int(v) for k, v in sample["predicted_label"].value_counts().items()}
    metrics: dict[str, float] = {DRIFT_SAMPLE_ROWS: float(len(sample))}
    if len(sample) == 0:
        return DriftResult(metrics, train.label_counts, prod_labels)

    vocabulary = train.vocabulary(s)
    production_lengths = sample["text_length"].to_numpy()
    metrics[DRIFT_PSI_LABEL] = categorical_psi(train.label_counts, prod_labels)
    metrics[DRIFT_PSI_TEXT_LENGTH] = length_psi(train, production_lengths, bins=s.length_bins)
    metrics[DRIFT_OOV_RATE] = oov_rate(sample["token_hashes"], vocabulary)
    oov = total = 0
    for frame in reference or []:
        features = text_features(frame[TEXT_COLUMN].tolist(), s, cleaned=True)
        batch_oov, batch_total = oov_counts(features["token_hashes"], vocabulary)
        oov, total = oov + batch_oov, total + batch_total
    if total:
        metrics[DRIFT_OOV_RATE_REFERENCE] = oov / total
    return DriftResult(
        metrics,
        train.label_counts,
        prod_labels,
        details={"train_length_counts": train.length_counts, "production_lengths": production_lengths},
    )


def _figure_png(result: DriftResult) -> str:
    """Length histograms and label shares as one PNG, base64 for inlining in the HTML."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    train_counts = result.details.get("train_length_counts")
    prod_len = result.details.get("production_lengths")
    if train_counts is not None and prod_len is not None and len(prod_len):
        both = add_histograms(train_counts, np.bincount(np.asarray(prod_len, dtype=np.int64)))
        top = float(histogram_quantiles(both, np.array([0.99]))[0]) or 1.0
        bins = np.linspace(0, top, 40)
        lengths = np.arange(len(train_counts))
        ax1.hist(lengths, bins=bins, weights=train_counts, density=True, alpha=0.5, label="training")
        ax1.hist(prod_len, bins=bins, density=True, alpha=0.5, label="production")
        ax1.set_xlabel("cleaned text length (characters)")
        ax1.legend()
    ax1.set_title("Text length")
    categories = sorted(set(result.training_labels) | set(result.production_labels))
    x = np.arange(len(categories))
    ax2.bar(x - 0.2, shares(result.training_labels, categories), 0.4, label="training labels")
    ax2.bar(x + 0.2, shares(result.production_labels, categories), 0.4, label="predicted in production")
    ax2.set_xticks(x, categories)
    ax2.set_title("Label shares")
    ax2.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def render_html(
    result: DriftResult, *, manifest_uri: str, since: datetime, until: datetime, threshold: float
) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(result.metrics.items())
    )
    categories = sorted(set(result.training_labels) | set(result.production_labels))
    train_sh = shares(result.training_labels, categories)
    prod_sh = shares(result.production_labels, categories)
    labels = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{t:.1%}</td><td>{p:.1%}</td></tr>"
        for c, t, p in zip(categories, train_sh, prod_sh, strict=True)
    )
    verdict = (
        f"<p class='alert'>Drift: a PSI is above {threshold:g}.</p>"
        if result.drifted
        else f"<p>No PSI above {threshold:g}.</p>"
    )
    if not result.metrics.get(DRIFT_SAMPLE_ROWS):
        verdict = "<p>No production predictions were sampled in this period: nothing to compare.</p>"
        image = ""
    else:
        image = (
            f"<img alt='length and label distributions' src='data:image/png;base64,{_figure_png(result)}'>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sentiflow drift report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}
.alert{{color:#b00;font-weight:bold}}</style></head><body>
<h1>Drift report</h1>
<p>Production predictions from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC vs training snapshot
<code>{html.escape(manifest_uri)}</code>.</p>
{verdict}
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<h2>Labels</h2><table><tr><th>label</th><th>training</th><th>production (predicted)</th></tr>{labels}</table>
{image}
<p>PSI &lt; 0.1 stable, 0.1–0.2 moderate, &gt; 0.2 shifted. The out-of-vocabulary rate is the share of
production tokens seen fewer than the vocabulary threshold in training; the reference is the validation
split's rate.</p>
</body></html>"""


def drift_report(
    manifest_uri: str,
    *,
    run_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    sample: pd.DataFrame | None = None,
    store: ObjectStore | None = None,
    settings: DriftSettings | None = None,
    alerter: FeedbackAlerter | None = None,
) -> DriftResult:
    """Compare the production sample (default: the last 7 days) with a clean snapshot; write the report.

    Writes ``drift_report.html`` and ``drift_metrics.json`` under ``s3://<bucket>/<reports_prefix>/<run_id>/``
    and, when a PSI exceeds the threshold, raises a drift alert (log line + webhook, delivered before
    returning so a short-lived task does not exit with it queued).
    """
    s = settings or DriftSettings()
    store = store or ObjectStore()
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=7)
    manifest = read_manifest(store, manifest_uri)
    columns = [TEXT_COLUMN, LABEL_COLUMN]
    train = SplitProfile.from_frames(
        iter_frames(store, manifest, "train", columns=columns), manifest.label_names
    )
    reference = (
        iter_frames(store, manifest, "validation", columns=[TEXT_COLUMN])
        if "validation" in manifest.splits
        else None
    )
    if sample is None:
        sample = read_production_sample(store, since=since, until=until, settings=s)
    result = compute_drift(train, reference, sample, s)

    worst = max(result.metrics.get(DRIFT_PSI_LABEL, 0.0), result.metrics.get(DRIFT_PSI_TEXT_LENGTH, 0.0))
    if worst > s.psi_threshold:
        alerter = alerter or FeedbackAlerter(AlertSettings())
        result.alert = alerter.raise_alert(
            Alert(
                kind=ALERT_DRIFT,
                summary=f"production inputs drifted from training: PSI {worst:.3f} > {s.psi_threshold:g}",
                details={
                    "metrics": result.metrics,
                    "training_snapshot": manifest_uri,
                    "since": since.isoformat(timespec="seconds"),
                    "until": until.isoformat(timespec="seconds"),
                    "versions": sorted({str(v) for v in sample["model_version"].dropna()}),
                },
            )
        )
        if alerter.sender is not None:
            alerter.sender.flush(
                timeout=alerter.settings.webhook_timeout_s * alerter.settings.webhook_max_attempts
            )

    folder = store.uri(s.reports_prefix, run_id)
    report_uri = folder.join("drift_report.html")
    page = render_html(result, manifest_uri=manifest_uri, since=since, until=until, threshold=s.psi_threshold)
    store.put_bytes(report_uri, page.encode(), "text/html; charset=utf-8")
    result.report_uri = str(report_uri)
    store.put_json(
        folder.join("drift_metrics.json"),
        {
            "metrics": result.metrics,
            "training_labels": result.training_labels,
            "production_labels": result.production_labels,
            "training_snapshot": manifest_uri,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "alert": result.alert.payload() if result.alert else None,
        },
    )
    return result


def log_drift_to_mlflow(
    result: DriftResult,
    *,
    mlflow_run_id: str | None = None,
    client: MlflowClient | None = None,
    settings: MLflowSettings | None = None,
    store: ObjectStore | None = None,
) -> str:
    """Log drift metrics and the HTML report to MLflow (default: a new run in the pipeline's experiment).

    ``client``/``settings``/``store`` default to the environment's; the DAG passes those built from its
    Airflow connections.
    """
    import tempfile
    from pathlib import Path

    import mlflow

    settings = settings or MLflowSettings()
    client = client or mlflow.MlflowClient()
    if mlflow_run_id is None:
        experiment = client.get_experiment_by_name(settings.experiment_name)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(settings.experiment_name)
        )
        mlflow_run_id = client.create_run(experiment_id, run_name="drift-report").info.run_id
        own_run = True
    else:
        own_run = False
    for name, value in result.metrics.items():
        client.log_metric(mlflow_run_id, name, float(value))
    if result.report_uri:
        client.set_tag(mlflow_run_id, DRIFT_REPORT_URI, result.report_uri)
        page = (store or ObjectStore()).get_bytes(result.report_uri)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "drift_report.html"
            path.write_bytes(page)
            client.log_artifact(mlflow_run_id, str(path), artifact_path="drift")
            (Path(tmp) / "drift_metrics.json").write_text(json.dumps(result.metrics, indent=2))
            client.log_artifact(mlflow_run_id, str(Path(tmp) / "drift_metrics.json"), artifact_path="drift")
    if own_run:
        client.set_terminated(mlflow_run_id)
    return mlflow_run_id
