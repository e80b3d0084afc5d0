"""The TF-IDF + logistic regression baseline: a fast, strong reference the transformer must beat."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sentiflow.modeling.base import TextClassifier
from sentiflow.names import DEFAULT_SEED, FAMILY_TFIDF

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MODEL_FILE = "tfidf_logreg.joblib"


class TfidfClassifier(TextClassifier):
    family = FAMILY_TFIDF

    def __init__(self, pipeline: Pipeline, label_names: list[str]) -> None:
        self.pipeline = pipeline
        self.label_names = list(label_names)

    @classmethod
    def build(
        cls,
        label_names: list[str],
        *,
        C: float = 4.0,
        max_features: int | None = 400_000,
        ngram_max: int = 2,
        seed: int = DEFAULT_SEED,
    ) -> TfidfClassifier:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        pipeline = Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        ngram_range=(1, ngram_max),
                        min_df=2,
                        max_features=max_features,
                        sublinear_tf=True,
                        dtype=np.float32,
                    ),
                ),
                ("logreg", LogisticRegression(C=C, max_iter=1000, random_state=seed)),
            ]
        )
        return cls(pipeline, label_names)

    def fit(self, texts: Iterable[str], labels: Sequence[int] | np.ndarray) -> TfidfClassifier:
        """``texts`` is read once, in order (a generator will do: no list of every text is built)."""
        self.pipeline.fit(texts, np.asarray(labels))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = self.pipeline.predict_proba(list(texts))
        # LogisticRegression orders columns by the classes it saw; map them onto label ids.
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float64)
        out[:, self.pipeline.classes_.astype(int)] = probs
        return out

    def save(self, directory: Path) -> None:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.pipeline, directory / MODEL_FILE)

    @classmethod
    def load(cls, directory: Path, label_names: list[str]) -> TfidfClassifier:
        import joblib

        return cls(joblib.load(directory / MODEL_FILE), label_names)
