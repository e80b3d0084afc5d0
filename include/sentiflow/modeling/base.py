"""The contract between training (which logs models) and serving (which loads them).

Every logged model is an MLflow pyfunc whose python model exposes ``.classifier``, a ``TextClassifier``.
``mlflow.pyfunc.load_model(uri).predict([...])`` works for any MLflow user; the model server unwraps the
classifier to batch texts itself (``mlflow.pyfunc.load_model(uri).unwrap_python_model().classifier``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas loads with the first frame, not when a server worker boots
    import pandas as pd


@dataclass(frozen=True)
class Prediction:
    label: str
    label_id: int
    scores: dict[str, float]


class TextClassifier(ABC):
    """A fitted text classifier: texts in, class probabilities out (rows sum to 1)."""

    #: ``label_names[i]`` is the name of class ``i`` (from the dataset manifest).
    label_names: list[str]
    #: ``names.FAMILY_TRANSFORMER`` or ``names.FAMILY_TFIDF``.
    family: str

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(label_names))``, float32 or float64."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return probabilities_to_predictions(self.predict_proba(texts), self.label_names)


def probabilities_to_predictions(probs: np.ndarray, label_names: Sequence[str]) -> list[Prediction]:
    ids = probs.argmax(axis=1)
    return [
        Prediction(
            label=label_names[int(i)],
            label_id=int(i),
            scores={name: float(p) for name, p in zip(label_names, row, strict=True)},
        )
        for i, row in zip(ids, probs, strict=True)
    ]


def predictions_frame(predictions: Sequence[Prediction], label_names: Sequence[str]) -> pd.DataFrame:
    """The pyfunc output: ``label``, ``label_id`` and one ``score_<label>`` column per class.

    ``label`` is a NumPy object column, not pandas' own string dtype: the V2 inference protocol's codecs
    (MLServer's MLflow runtime, KServe) map NumPy dtypes to tensor types and know no other string type.
    """
    import pandas as pd

    return pd.DataFrame(
        {
            "label": pd.Series([p.label for p in predictions], dtype=object),
            "label_id": [p.label_id for p in predictions],
            **{f"score_{name}": [p.scores[name] for p in predictions] for name in label_names},
        }
    )
