"""Fine-tune a pretrained encoder with Hugging Face ``Trainer``: evaluate each epoch, keep the best by val_f1.

Throughput on CPU comes from padding each batch only to its longest text and grouping texts of similar
length into batches (``train_sampling_strategy="group_by_length"``); bf16 autocast where the hardware has
it. Trainer's own MLflow integration is off (``report_to="none"``): ``EpochLogger`` logs into our one run.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentiflow.modeling.transformer import TransformerClassifier, resolve_bf16, resolve_device
from sentiflow.names import (
    BEST_EPOCH,
    LABEL_COLUMN,
    SPLIT_METRIC_SUFFIXES,
    TEXT_COLUMN,
    TRAIN_LOSS,
    split_metric,
)
from sentiflow.train.artifacts import best_epoch
from sentiflow.train.data import TrainingData
from sentiflow.train.errors import TrainingError
from sentiflow.train.metrics import classification_metrics
from sentiflow.train.params import TrainParams
from sentiflow.train.trainer_progress import progress_callback

log = logging.getLogger(__name__)

#: Trainer prefixes evaluation metrics with ``eval_``; ours are the un-prefixed suffixes (``f1`` ...).
BEST_METRIC = "f1"


@dataclass
class FitResult:
    classifier: TransformerClassifier
    history: list[dict[str, float]] = field(default_factory=list)
    fit_time_s: float = 0.0
    best_epoch: int | None = None
    train_samples_per_s: float = 0.0


def build_classifier(params: TrainParams, label_names: list[str]) -> TransformerClassifier:
    from transformers import set_seed

    set_seed(params.seed)  # the new classification head is initialised reproducibly
    try:
        return TransformerClassifier.from_pretrained(
            params.model_name,
            label_names,
            num_hidden_layers=params.num_hidden_layers,
            attn_implementation=params.attn_implementation,
            attention_dropout=params.attention_dropout,
            hidden_dropout=params.hidden_dropout,
            max_length=params.max_length,
            truncation=params.truncation,
            batch_size=params.per_device_eval_batch_size,
            bf16=params.bf16,
            device=params.device,
        )
    except OSError as exc:
        raise TrainingError(
            f"cannot load pretrained model {params.model_name!r}: {exc}. Offline machines pass a local path "
            "(e.g. ../shared/models/all-MiniLM-L6-v2) as model_name."
        ) from exc


def encode_dataset(classifier: TransformerClassifier, frame: Any) -> Any:
    """Token ids (no padding: the collator pads per batch) plus labels, as a ``datasets.Dataset``."""
    from datasets import Dataset

    ids = classifier.encode(frame[TEXT_COLUMN].tolist())
    return Dataset.from_dict(
        {
            "input_ids": ids,
            "labels": frame[LABEL_COLUMN].astype(int).tolist(),
            "length": [len(i) for i in ids],
        }
    )


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    import numpy as np
    from scipy.special import softmax

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    metrics = classification_metrics("val", labels, softmax(np.asarray(logits, dtype=np.float64), axis=1))
    metrics.pop(split_metric("val", "loss"), None)  # Trainer reports its own eval_loss
    return {name.removeprefix("val_"): value for name, value in metrics.items()}


def _epoch_logger_class() -> type:
    from transformers import TrainerCallback

    class EpochLogger(TrainerCallback):
        """Collects ``train_loss`` and ``val_*`` per epoch, hands each epoch to ``on_epoch``, stops on NaN."""

        def __init__(self, on_epoch: Callable[[int, dict[str, float]], None] | None) -> None:
            self.on_epoch = on_epoch
            self.history: list[dict[str, float]] = []
            self._train_loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                loss = float(logs["loss"])
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"training loss became {loss} at epoch {state.epoch:.2f}: lower learning_rate "
                        "or check the data"
                    )
                self._train_loss = loss

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics = metrics or {}
            epoch = round(state.epoch or 0)
            row: dict[str, float] = {"epoch": epoch}
            if self._train_loss is not None:
                row[TRAIN_LOSS] = self._train_loss
            for suffix in SPLIT_METRIC_SUFFIXES:
                if f"eval_{suffix}" in metrics:
                    row[split_metric("val", suffix)] = float(metrics[f"eval_{suffix}"])
            val_loss = row.get(split_metric("val", "loss"))
            if val_loss is not None and not math.isfinite(val_loss):
                raise TrainingError(f"validation loss is {val_loss} after epoch {epoch}: training diverged")
            self.history.append(row)
            log.info("epoch %s: %s", epoch, {k: round(v, 4) for k, v in row.items()})
            if self.on_epoch:
                self.on_epoch(epoch, {k: v for k, v in row.items() if k != "epoch"})

    return EpochLogger


def training_arguments(params: TrainParams, output_dir: str, *, device: str, **overrides: Any) -> Any:
    """Our Trainer settings; ``overrides`` let the benchmark build the tutorial set-up from the same base."""
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": params.num_train_epochs,
        "per_device_train_batch_size": params.per_device_train_batch_size,
        "per_device_eval_batch_size": params.per_device_eval_batch_size,
        "learning_rate": params.learning_rate,
        "weight_decay": params.weight_decay,
        "warmup_steps": params.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        "seed": params.seed,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "logging_nan_inf_filter": False,  # a NaN loss must reach EpochLogger, not be hidden
        "load_best_model_at_end": True,
        "metric_for_best_model": BEST_METRIC,
        "greater_is_better": True,
        "save_total_limit": 1,
        "save_only_model": True,
        "train_sampling_strategy": "group_by_length",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": resolve_bf16(params.bf16, device),
        "dataloader_num_workers": 0,
    }
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def fit_transformer(
    data: TrainingData,
    params: TrainParams,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Fine-tune, evaluating on the validation split every epoch; returns the best epoch's classifier."""
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    device = resolve_device(params.device)
    classifier = build_classifier(params, data.label_names)
    train_ds = encode_dataset(classifier, data.train)
    val_ds = encode_dataset(classifier, data.validation)
    logger = _epoch_logger_class()(on_epoch)
    callbacks: list[Any] = [logger, progress_callback()]
    if params.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience))

    with tempfile.TemporaryDirectory(prefix="sentiflow-train-") as output_dir:
        trainer = Trainer(
            model=classifier.model,
            args=training_arguments(params, output_dir, device=device),
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=classifier.tokenizer,
            data_collator=DataCollatorWithPadding(classifier.tokenizer),
            compute_metrics=compute_metrics,
            callbacks=callbacks,
        )
        started = time.perf_counter()
        try:
            output = trainer.train()
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of memory on {device} with per_device_train_batch_size="
                f"{params.per_device_train_batch_size}, max_length={params.max_length}: lower one of them"
            ) from exc
        fit_time = time.perf_counter() - started
        classifier.model = trainer.model  # the best epoch's weights (load_best_model_at_end)

    best = best_epoch(logger.history)
    return FitResult(
        classifier=classifier,
        history=logger.history,
        fit_time_s=fit_time,
        best_epoch=int(best[BEST_EPOCH]) if best else None,
        train_samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
    )
