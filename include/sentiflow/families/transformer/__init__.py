"""The fine-tuned transformer family: a pretrained Hugging Face encoder with a new classification head.

The only family that may train in the GPU pod (``gpu=True``); served through PyTorch or ONNX Runtime
(``onnx_runtime.py``), whose file it ships inside each logged model (``shipping``).
"""

from __future__ import annotations

from sentiflow.families.catalogue import ModelFamily
from sentiflow.families.transformer.params import TrainParams, TransformerSwitch, params_from_form
from sentiflow.names import FAMILY_TRANSFORMER

FAMILY = ModelFamily(
    name=FAMILY_TRANSFORMER,
    params=TrainParams,
    training="sentiflow.families.transformer.training:run_training",
    classifier="sentiflow.families.transformer.model:TransformerClassifier",
    form=(TrainParams, TransformerSwitch),
    switch="train_transformer",
    params_from_form=params_from_form,
    shipping="sentiflow.families.transformer.training:ship_onnx",
    pip_requirements=("torch==2.13.0", "transformers==5.23.0"),
    serving_runtime="torch",
    serving="sentiflow.families.transformer.onnx_runtime:for_serving",
    serving_modules=(
        "sentiflow.families.transformer.model",
        "torch",
        "transformers.modeling_utils",
        "onnxruntime",
    ),
    gpu=True,
    task_id="train_local",
)
