"""The TF-IDF + logistic regression baseline family: fast, strong, and the reference a transformer must beat.

The example of a whole family in one folder: parameters and form fields (``params.py``), training
(``training.py``), the model and its loading (``model.py``), what serving it needs, and its runtime name.
"""

from __future__ import annotations

from sentiflow.families.catalogue import ModelFamily
from sentiflow.families.tfidf.params import BaselineParams, TfidfForm, params_from_form
from sentiflow.names import FAMILY_TFIDF

FAMILY = ModelFamily(
    name=FAMILY_TFIDF,
    params=BaselineParams,
    training="sentiflow.families.tfidf.training:run_baseline",
    classifier="sentiflow.families.tfidf.model:TfidfClassifier",
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
