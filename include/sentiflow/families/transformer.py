"""The fine-tuned transformer family: a pretrained Hugging Face encoder with a new classification head.

The only family that may train in the GPU pod (``gpu=True``); served through PyTorch or ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiflow.families.catalogue import ModelFamily
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.train.params import TrainParams


def _run(manifest_uri: str, params: Any, **kwargs: Any) -> Any:
    from sentiflow.train.runner import run_training

    return run_training(manifest_uri, params, **kwargs)


def _load(folder: Path, label_names: list[str]) -> Any:
    from sentiflow.modeling.transformer import TransformerClassifier

    return TransformerClassifier.load(folder, label_names)


FAMILY = ModelFamily(
    name=FAMILY_TRANSFORMER,
    params=TrainParams,
    run=_run,
    load=_load,
    pip_requirements=("torch==2.13.0", "transformers==5.23.0"),
    serving_runtime="torch",
    serving_modules=("sentiflow.modeling.transformer", "torch", "transformers.modeling_utils", "onnxruntime"),
    gpu=True,
    task_id="train_local",
)
