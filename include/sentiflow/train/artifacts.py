"""Run artifacts a reviewer opens in the MLflow UI: plots, reports, metrics and the dataset lineage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sentiflow.names import BEST_EPOCH, TRAIN_LOSS, VAL_F1, VAL_LOSS


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")  # training runs headless (pods, Airflow workers)
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(
    path: Path, labels: np.ndarray, probs: np.ndarray, label_names: Sequence[str], title: str
) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(label_names), 4 + 0.4 * len(label_names)))
    ConfusionMatrixDisplay.from_predictions(
        labels,
        probs.argmax(axis=1),
        labels=list(range(len(label_names))),
        display_labels=list(label_names),
        ax=ax,
        colorbar=False,
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def roc_curve_png(path: Path, labels: np.ndarray, probs: np.ndarray, label_names: Sequence[str]) -> Path:
    """Binary: the positive class; more classes: one curve per class (one-vs-rest)."""
    from sklearn.metrics import RocCurveDisplay

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    classes = [1] if len(label_names) == 2 else list(range(len(label_names)))
    for c in classes:
        target = (labels == c).astype(int)
        if 0 < target.sum() < len(target):
            RocCurveDisplay.from_predictions(target, probs[:, c], name=label_names[c], ax=ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_title("ROC curve (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def history_png(path: Path, history: Sequence[dict[str, float]]) -> Path:
    """Loss (train, val) and val_f1 per epoch, so over-fitting and the best epoch are visible."""
    plt = _pyplot()
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for key in (TRAIN_LOSS, VAL_LOSS):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        if points:
            ax_loss.plot(*zip(*points, strict=True), marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_f1.plot(epochs, [h.get(VAL_F1, float("nan")) for h in history], marker="o", label=VAL_F1)
    ax_f1.set_xlabel("epoch")
    ax_f1.set_title(VAL_F1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_evaluation_artifacts(
    directory: Path,
    *,
    label_names: Sequence[str],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    metrics: dict[str, float],
    manifest: dict[str, Any],
    manifest_uri: str,
    history: Sequence[dict[str, float]] | None = None,
) -> Path:
    """Write every artifact into ``directory`` (then logged with one ``log_artifacts`` call)."""
    from sklearn.metrics import classification_report

    directory.mkdir(parents=True, exist_ok=True)
    confusion_matrix_png(directory / "confusion_matrix_val.png", *val, label_names, "Confusion matrix (val)")
    confusion_matrix_png(
        directory / "confusion_matrix_test.png", *test, label_names, "Confusion matrix (test)"
    )
    roc_curve_png(directory / "roc_curve_test.png", *test, label_names)
    if history:
        history_png(directory / "training_history.png", history)
        (directory / "history.json").write_text(json.dumps(list(history), indent=2))
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    reports = []
    for split, (labels, probs) in (("validation", val), ("test", test)):
        report = classification_report(
            labels,
            probs.argmax(axis=1),
            labels=list(range(len(label_names))),
            target_names=list(label_names),
            digits=4,
            zero_division=0,
        )
        reports.append(f"== {split} ==\n{report}")
    (directory / "classification_report.txt").write_text("\n".join(reports))
    (directory / "dataset_manifest.json").write_text(
        json.dumps({"manifest_uri": manifest_uri, **manifest}, indent=2, default=str)
    )
    return directory


def best_epoch(history: Sequence[dict[str, float]]) -> dict[str, float]:
    """The epoch with the highest ``val_f1`` (the earliest on ties), as Trainer's best checkpoint picks it."""
    scored = [h for h in history if VAL_F1 in h]
    if not scored:
        return {}
    best = max(scored, key=lambda h: (h[VAL_F1], -h["epoch"]))
    return {BEST_EPOCH: best["epoch"], VAL_F1: best[VAL_F1]}
