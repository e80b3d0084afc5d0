"""Log any ``TextClassifier`` as a servable MLflow pyfunc model, and load it back.

One wrapper for every family: the classifier saves itself into a folder with a ``classifier.json`` that
names its family and labels; ``load_classifier`` asks that family (``sentiflow.families``) to load it.
``mlflow.pyfunc.load_model(uri)`` then works for any MLflow user, and the model server unwraps
``.classifier`` to batch texts itself. A transformer's model also ships its ONNX file for the server
(``sentiflow.modeling.onnx_runtime.ship_onnx_models``), inside the folder that is signed and uploaded.
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
from sentiflow.names import TAG_ONNX_SHIPPED
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


def _ship_onnx(classifier: TextClassifier, directory: Path) -> None:
    """A transformer's ONNX file(s) into its saved folder, and the run's ``onnx_shipped`` tag saying which.

    Built and verified here, once per version, so that the replicas do not each build it when the version
    is deployed; a file that cannot be built or opened raises (``ship_onnx_models``), and the version is not
    logged; one that disagrees with PyTorch is left out with its reason, and the tag says ``none``.
    """
    from sentiflow.modeling.transformer import TransformerClassifier

    if not isinstance(classifier, TransformerClassifier):
        return
    from sentiflow.modeling.onnx_runtime import ship_onnx_models

    shipped = ship_onnx_models(classifier, directory)
    mlflow.set_tag(TAG_ONNX_SHIPPED, ",".join(shipped) or "none")


def log_classifier(
    classifier: TextClassifier, *, name: str = "model", registered_model_name: str | None = None
) -> Any:
    """Log ``classifier`` into the active MLflow run as a pyfunc model (signature + input example).

    Returns MLflow's ``ModelInfo``; with ``registered_model_name`` a registry version is created too. A
    transformer's folder gets its ONNX file first (``_ship_onnx``): it is signed and uploaded with the rest.
    """
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        directory = save_classifier(classifier, Path(tmp) / CLASSIFIER_ARTIFACT)
        # A plain list of strings, so ``load_model(uri).predict(["some text"])`` works as users expect.
        example = list(INPUT_EXAMPLE)
        output = predictions_frame(classifier.predict(INPUT_EXAMPLE), classifier.label_names)
        _ship_onnx(classifier, directory)
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
