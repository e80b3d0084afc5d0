"""The fine-tuned transformer family: a pretrained Hugging Face encoder with a new classification head.

The only family that may train in the GPU pod (``gpu=True``); served through PyTorch or ONNX Runtime
(``onnx_runtime.py``), whose file it ships inside each logged model (``ship``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiflow.families.catalogue import ModelFamily
from sentiflow.families.transformer.params import TrainParams, TransformerSwitch, params_from_form
from sentiflow.names import FAMILY_TRANSFORMER


def _run(manifest_uri: str, params: Any, **kwargs: Any) -> Any:
    from sentiflow.families.transformer.training import run_training

    return run_training(manifest_uri, params, **kwargs)


def _load(folder: Path, label_names: list[str]) -> Any:
    from sentiflow.families.transformer.model import TransformerClassifier

    return TransformerClassifier.load(folder, label_names)


def _ship(classifier: Any, folder: Path) -> None:
    """The ONNX file(s) into the model's folder, and the run's ``onnx_shipped`` tag saying which.

    Built and verified here, once per version, so that the replicas do not each build it when the version
    is deployed; a file that cannot be built or opened raises (``ship_onnx_models``), and the version is not
    logged; one that disagrees with PyTorch is left out with its reason, and the tag says ``none``.
    """
    import mlflow

    from sentiflow.families.transformer.onnx_runtime import ship_onnx_models
    from sentiflow.names import TAG_ONNX_SHIPPED

    mlflow.set_tag(TAG_ONNX_SHIPPED, ",".join(ship_onnx_models(classifier, folder)) or "none")


FAMILY = ModelFamily(
    name=FAMILY_TRANSFORMER,
    params=TrainParams,
    run=_run,
    load=_load,
    form=(TrainParams, TransformerSwitch),
    switch="train_transformer",
    params_from_form=params_from_form,
    ship=_ship,
    pip_requirements=("torch==2.13.0", "transformers==5.23.0"),
    serving_runtime="torch",
    serving_modules=(
        "sentiflow.families.transformer.model",
        "torch",
        "transformers.modeling_utils",
        "onnxruntime",
    ),
    gpu=True,
    task_id="train_local",
)
