"""The TF-IDF + logistic regression baseline family: fast, strong, and the reference a transformer must beat.

The example of a whole family in one entry: parameters (``BaselineParams``), training (``run_baseline``),
loading (``TfidfClassifier.load``), what serving it needs, and its runtime name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiflow.families.catalogue import ModelFamily
from sentiflow.names import FAMILY_TFIDF
from sentiflow.train.params import BaselineParams


def _run(manifest_uri: str, params: Any, **kwargs: Any) -> Any:
    from sentiflow.train.runner import run_baseline

    return run_baseline(manifest_uri, params, **kwargs)


def _load(folder: Path, label_names: list[str]) -> Any:
    from sentiflow.modeling.tfidf import TfidfClassifier

    return TfidfClassifier.load(folder, label_names)


FAMILY = ModelFamily(
    name=FAMILY_TFIDF,
    params=BaselineParams,
    run=_run,
    load=_load,
    pip_requirements=("scikit-learn", "joblib"),
    serving_runtime="scikit-learn",
    serving_modules=(
        "sentiflow.modeling.tfidf",
        "sklearn.feature_extraction.text",
        "sklearn.linear_model",
        "sklearn.pipeline",
    ),
    task_id="train_baseline",
)
