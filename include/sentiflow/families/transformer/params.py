"""The transformer's parameters with Hugging Face names, and its trigger-form fields beside them.

Field names are the MLflow parameter names (``tests/unit/train/test_train_params.py`` checks each one is
defined in ``sentiflow.names``), so a DAG can build these models straight from its Airflow params.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sentiflow.names import DEFAULT_SEED
from sentiflow.settings.components import PipelineDefaults

#: A dropout probability, or None for the checkpoint's own value.
DropoutRate = Annotated[float | None, Field(ge=0, lt=1)]


def _default_model_name() -> str:
    return PipelineDefaults().model_name


#: Named parameter sets (``preset``). Each fills the fields a caller left at their default, so a trigger form
#: (which sends every field) and a command line (which sends only the flags given) both get it, and any value
#: the caller changed still wins. ``gpu_weekly`` is the weekly retrain on a GPU (docs/training.md): the full
#: train split, 512 tokens with head+tail truncation (Sun et al. 2019: best for IMDb's long reviews), 3 epochs
#: with warm-up, early stopping on validation F1 after one epoch without gain, and a data loader that keeps
#: the device fed (worker processes, pinned memory).
PRESETS: dict[str, dict[str, Any]] = {
    "gpu_weekly": {
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 256,
        "learning_rate": 5e-5,
        "warmup_ratio": 0.1,
        "max_length": 512,
        "truncation": "head_tail",
        "train_subset_size": None,
        "eval_subset_size": None,
        "early_stopping_patience": 1,
        "dataloader_num_workers": 4,
    },
}


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
        default=DEFAULT_SEED, title="Seed", description="Seed for sampling, initialisation and data order."
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

    tf32: Literal["auto", "on", "off"] = Field(
        default="auto",
        title="TF32 matmuls",
        description="TensorFloat-32 for float32 matmuls: auto = on for CUDA GPUs that have it (Ampere and "
        "newer); never on CPU.",
    )
    torch_compile: Literal["on", "off"] = Field(
        default="off",
        title="torch.compile",
        description="Compile the model (Trainer's torch_compile): fewer kernel launches on a GPU, at "
        "the cost of a compile at the start.",
    )
    dataloader_num_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        title="Data loader workers",
        description="Processes that collate batches beside training; empty = auto (0 on CPU, where they "
        "would take the training's cores; 4 per GPU).",
    )
    dataloader_pin_memory: Literal["auto", "on", "off"] = Field(
        default="auto",
        title="Pinned memory",
        description="Batches in page-locked host memory, so host-to-GPU copies overlap compute: auto = on "
        "for CUDA; no effect on CPU.",
    )
    gpus: int = Field(
        default=1,
        ge=1,
        le=64,
        title="GPUs",
        description="Data-parallel processes, one per GPU: above 1 the entrypoint runs under torchrun (DDP; "
        "gloo on CPU). The Kubernetes pod passes its own GPU count (SENTIFLOW_TRAINER_POD_GPU_COUNT).",
    )
    preset: Literal["none", "gpu_weekly"] = Field(
        default="none",
        title="Preset",
        description="Named parameter set (docs/training.md); it fills the fields left at their default. "
        "gpu_weekly: full train split, 512 tokens head+tail, 3 epochs, early stopping.",
    )

    @field_validator("bf16", "tf32", "torch_compile", "dataloader_pin_memory", mode="before")
    @classmethod
    def _bool_to_switch(cls, value: object) -> object:
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @model_validator(mode="after")
    def _apply_preset(self) -> TrainParams:
        """Fill the preset's values into every field not set, or set to its default (a form sends all)."""
        for name, value in PRESETS.get(self.preset, {}).items():
            info = type(self).model_fields[name]
            if name not in self.model_fields_set or getattr(self, name) == info.get_default(
                call_default_factory=True
            ):
                setattr(self, name, value)
        return self


class TrainExtra(BaseModel):
    """The transformer's form field beside ``TrainParams``' own: any of its fields as one JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_extra: dict[str, Any] = Field(
        default_factory=dict,
        title="Extra training parameters",
        description='TrainParams fields as one JSON object, e.g. {"num_hidden_layers": 2, "bf16": '
        '"auto"}; they win over the fields above, and unknown names fail the run.',
    )


class TransformerSwitch(TrainExtra):
    """The pipeline's switch for the transformer, beside its extra fields."""

    train_transformer: bool = Field(
        default=True,
        title="Train the transformer",
        description="Fine-tune the transformer (pod or local). Turn off with the baseline on for a quick "
        "baseline-only release.",
    )


def params_from_form(forms: list[Any], seed: int) -> TrainParams:
    """``TrainParams`` from the form's fields (``forms[0]``), ``train_extra`` (``forms[1]``) winning."""
    del seed  # the run's seed is this family's own field
    fields, extra = forms
    if not extra.train_extra:
        return fields  # validated once, as its form group
    return TrainParams.model_validate({**fields.model_dump(exclude_unset=True), **extra.train_extra})
