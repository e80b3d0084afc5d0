"""The TF-IDF + logistic regression baseline family: fast, strong, and the reference a transformer must beat.

The example of a whole family in one folder: parameters and form fields (``params.py``), training
(``training.py``), the model and its loading (``model.py``), what serving it needs, and its runtime name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiflow.families.catalogue import ModelFamily
from sentiflow.families.tfidf.params import BaselineParams, TfidfForm, params_from_form
from sentiflow.names import FAMILY_TFIDF


def _run(manifest_uri: str, params: Any, **kwargs: Any) -> Any:
    from sentiflow.families.tfidf.training import run_baseline

    return run_baseline(manifest_uri, params, **kwargs)


def _load(folder: Path, label_names: list[str]) -> Any:
    from sentiflow.families.tfidf.model import TfidfClassifier

    return TfidfClassifier.load(folder, label_names)


FAMILY = ModelFamily(
    name=FAMILY_TFIDF,
    params=BaselineParams,
    run=_run,
    load=_load,
    form=(TfidfForm,),
    switch="run_baseline",
    params_from_form=params_from_form,
    pip_requirements=("scikit-learn", "joblib"),
    serving_runtime="scikit-learn",
    serving_modules=(
        "sentiflow.families.tfidf.model",
        "sklearn.feature_extraction.text",
        "sklearn.linear_model",
        "sklearn.pipeline",
    ),
    task_id="train_baseline",
)
