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
    """Transformer fine-tuning. Unknown keys are rejected so a typo in a trigger fails loudly.

    The one definition of these parameters: the command line (``sentiflow.train.cli``) and the DAGs' trigger
    form (``sentiflow.orchestration.model_form``) are generated from this model's fields and JSON schema, so
    titles, descriptions, bounds and defaults are written here only.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = Field(
        default_factory=_default_model_name,
        min_length=1,
        title="Pretrained model",
        description="Hub name or local path of any AutoModelForSequenceClassification-compatible model.",
    )
    num_train_epochs: float = Field(
        default=3.0, gt=0, title="Epochs", description="num_train_epochs (Hugging Face TrainingArguments)."
    )
    per_device_train_batch_size: int = Field(
        default=16, ge=1, title="Train batch size", description="per_device_train_batch_size."
    )
    per_device_eval_batch_size: int = Field(
        default=64, ge=1, title="Eval batch size", description="per_device_eval_batch_size."
    )
    learning_rate: float = Field(
        default=5e-5, gt=0, title="Learning rate", description="Peak learning rate (linear decay)."
    )
    weight_decay: float = Field(default=0.01, ge=0, title="Weight decay", description="AdamW weight decay.")
    warmup_ratio: float = Field(
        default=0.1, ge=0, lt=1, title="Warm-up ratio", description="Fraction of steps with linear warm-up."
    )
    max_length: int = Field(
        default=256, ge=8, le=8192, title="Max length", description="Tokens per text after truncation."
    )
    train_subset_size: int | None = Field(
        default=None,
        ge=1,
        title="Train subset",
        description="Train on this many rows of the snapshot's train split; empty = all.",
    )
    eval_subset_size: int | None = Field(
        default=None,
        ge=1,
        title="Eval subset",
        description="Evaluate on this many validation rows; empty = all.",
    )
    seed: int = Field(
        default=42, title="Seed", description="Seed for sampling, initialisation and data order."
    )
    early_stopping_patience: int | None = Field(
        default=2,
        ge=0,
        title="Early stopping",
        description="Epochs without a better val_f1 before stopping; 0 or empty disables.",
    )
    truncation: Literal["head", "head_tail"] = Field(
        default="head",
        title="Truncation",
        description="head: first tokens; head_tail: first and last tokens of long texts (Sun et al. 2019).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", title="Device", description="auto: CUDA when visible, else CPU."
    )
    bf16: Literal["auto", "on", "off"] = Field(
        default="auto",
        title="bf16 autocast",
        description="bf16 autocast: auto = on where the hardware does bf16 natively.",
    )
    num_hidden_layers: int | None = Field(
        default=None,
        ge=1,
        title="Encoder layers",
        description="Keep only the first N encoder layers (smaller, faster model); empty = all.",
    )
    attn_implementation: str | None = Field(
        default=None,
        title="Attention implementation",
        description="e.g. eager or sdpa; empty keeps the model's default.",
    )
    attention_dropout: DropoutRate = Field(
        default=0.0,
        title="Attention dropout",
        description="Dropout on attention probabilities; 0 lets torch use its fused attention kernel. "
        "Empty keeps the checkpoint's value (BERT: 0.1).",
    )
    hidden_dropout: DropoutRate = Field(
        default=0.0,
        title="Hidden dropout",
        description="Dropout on hidden states (embeddings, attention and feed-forward outputs, BERT's "
        "classification head). Empty keeps the checkpoint's value (BERT: 0.1).",
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
