"""Training parameters with Hugging Face names (DESIGN.md), validated once for the CLI, the DAG and tests.

Field names are the MLflow parameter names (``tests/test_train_params.py`` checks each one is defined in
``sentiflow.names``), so a DAG can build these models straight from its Airflow params.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sentiflow.config import PipelineDefaults

#: A dropout probability, or None for the checkpoint's own value.
DropoutRate = Annotated[float | None, Field(ge=0, lt=1)]


def _default_model_name() -> str:
    return PipelineDefaults().model_name


class TrainParams(BaseModel):
    """Transformer fine-tuning. Unknown keys are rejected so a typo in a trigger fails loudly."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = Field(default_factory=_default_model_name, description="Hub name or local path.")
    num_train_epochs: float = Field(default=3.0, gt=0)
    per_device_train_batch_size: int = Field(default=16, ge=1)
    per_device_eval_batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_length: int = Field(default=256, ge=8, le=8192)
    train_subset_size: int | None = Field(default=None, ge=1, description="Sample this many train rows.")
    eval_subset_size: int | None = Field(default=None, ge=1, description="Sample this many validation rows.")
    seed: int = 42
    early_stopping_patience: int | None = Field(
        default=2, ge=0, description="Epochs without a better val_f1 before stopping; 0 or None disables."
    )
    truncation: Literal["head", "head_tail"] = "head"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: Literal["auto", "on", "off"] = Field(
        default="auto", description="bf16 autocast: auto = on where the hardware does bf16 natively."
    )
    num_hidden_layers: int | None = Field(
        default=None, ge=1, description="Keep only the first N encoder layers (smaller, faster model)."
    )
    attn_implementation: str | None = Field(
        default=None, description="e.g. eager or sdpa; None keeps the model's default."
    )
    attention_dropout: DropoutRate = Field(
        default=0.0,
        description="Dropout on attention probabilities; 0 lets torch use its fused attention kernel. "
        "None keeps the checkpoint's value (BERT: 0.1).",
    )
    hidden_dropout: DropoutRate = Field(
        default=0.0,
        description="Dropout on hidden states (embeddings, attention and feed-forward outputs, BERT's "
        "classification head). None keeps the checkpoint's value (BERT: 0.1).",
    )

    @field_validator("bf16", mode="before")
    @classmethod
    def _bool_to_switch(cls, value: object) -> object:
        if isinstance(value, bool):
            return "on" if value else "off"
        return value


class BaselineParams(BaseModel):
    """TF-IDF (word n-grams) + logistic regression, on the same splits as the transformer."""

    model_config = ConfigDict(extra="forbid")

    C: float = Field(default=4.0, gt=0, description="Inverse regularisation strength.")
    ngram_max: int = Field(default=2, ge=1, le=3)
    max_features: int | None = Field(default=400_000, ge=1)
    train_subset_size: int | None = Field(default=None, ge=1)
    eval_subset_size: int | None = Field(default=None, ge=1)
    seed: int = 42
