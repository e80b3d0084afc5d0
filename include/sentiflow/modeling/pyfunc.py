"""Log any ``TextClassifier`` as a servable MLflow pyfunc model, and load it back.

One wrapper for every family: the classifier saves itself into a folder with a ``classifier.json`` that
names its family and labels; ``load_classifier`` asks that family (``sentiflow.families``) to load it.
``mlflow.pyfunc.load_model(uri)`` then works for any MLflow user, and the model server unwraps
``.classifier`` to batch texts itself. A family may add files for the server (``ModelFamily.shipping``: a
transformer's ONNX file), inside the folder that is signed and uploaded.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from sentiflow.modeling.base import TextClassifier, predictions_frame
from sentiflow.security.signed_logging import log_signed_pyfunc
from sentiflow.settings.components import SigningSettings

CLASSIFIER_ARTIFACT = "classifier"
DESCRIPTOR_FILE = "classifier.json"
INPUT_EXAMPLE = ["A wonderful film with a moving story.", "Dull, too long and badly acted."]


def save_classifier(classifier: Any, directory: Path) -> Path:
    """``classifier.save(directory)`` plus the descriptor that says how to load it back."""
    classifier.save(directory)
    descriptor = {"family": classifier.family, "label_names": classifier.label_names}
    (directory / DESCRIPTOR_FILE).write_text(json.dumps(descriptor, indent=2))
    return directory


def load_classifier(directory: str | Path) -> TextClassifier:
    directory = Path(directory)
    descriptor = json.loads((directory / DESCRIPTOR_FILE).read_text())
    from sentiflow.families.catalogue import UnknownFamilyError, family

    try:
        entry = family(descriptor["family"])
    except UnknownFamilyError as exc:
        raise ValueError(f"{exc} (in {directory})") from exc
    return entry.load(directory, list(descriptor["label_names"]))


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        return [str(t) for t in model_input[column].tolist()]
    if isinstance(model_input, pd.Series):
        return [str(t) for t in model_input.tolist()]
    if isinstance(model_input, str):
        return [model_input]
    return [str(t) for t in model_input]


class SentimentPyfunc(PythonModel):
    """texts (list, Series, or a frame with a ``text`` column) → label, label_id, score_<label>."""

    classifier: TextClassifier

    def load_context(self, context: PythonModelContext) -> None:
        self.classifier = load_classifier(context.artifacts[CLASSIFIER_ARTIFACT])

    # No type hints on purpose: MLflow would derive a signature from them; the logged one is explicit.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        texts = _texts(model_input)
        return predictions_frame(self.classifier.predict(texts), self.classifier.label_names)


def pip_requirements(family: str) -> list[str]:
    """Explicit requirements: MLflow's inference would load the model in a subprocess (slow) and guess."""
    import sentiflow
    from sentiflow.families.catalogue import family as family_named

    common = [f"sentiflow=={sentiflow.__version__}", "pandas", "numpy"]
    return [*common, *family_named(family).pip_requirements]


def log_classifier(
    classifier: TextClassifier, *, name: str = "model", registered_model_name: str | None = None
) -> Any:
    """Log ``classifier`` into the active MLflow run as a pyfunc model (signature + input example).

    Returns MLflow's ``ModelInfo``; with ``registered_model_name`` a registry version is created too. The
    family adds its own files first (``ModelFamily.shipping``: a transformer's ONNX file), signed and uploaded
    with the rest.
    """
    from mlflow.models import infer_signature

    from sentiflow.families.catalogue import family

    with tempfile.TemporaryDirectory() as tmp:
        directory = save_classifier(classifier, Path(tmp) / CLASSIFIER_ARTIFACT)
        # A plain list of strings, so ``load_model(uri).predict(["some text"])`` works as users expect.
        example = list(INPUT_EXAMPLE)
        output = predictions_frame(classifier.predict(INPUT_EXAMPLE), classifier.label_names)
        family(classifier.family).ship(classifier, directory)
        model = {
            "python_model": SentimentPyfunc(),
            "artifacts": {CLASSIFIER_ARTIFACT: str(directory)},
            "signature": infer_signature(example, output),
            "input_example": example,
            "pip_requirements": pip_requirements(classifier.family),
        }
        key = SigningSettings().key()
        if key is not None:  # the pipeline signs what it uploads (sentiflow.security.signed_logging)
            return log_signed_pyfunc(
                private_key=key, name=name, registered_model_name=registered_model_name, **model
            )
        return mlflow.pyfunc.log_model(name=name, registered_model_name=registered_model_name, **model)
