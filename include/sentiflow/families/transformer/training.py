"""The transformer's training: fine-tune with Hugging Face ``Trainer``, keep the best epoch by val_f1.

``run_training`` hands the fitted model to the shared evaluation and logging (``train.runner.finish``).

Throughput comes from padding each batch only to its longest text and grouping texts of similar length into
batches (``train_sampling_strategy="group_by_length"``), from tokenizing once, before the fit, into an Arrow
file (``datasets.map``) that every epoch and every data-loader worker reads memory-mapped, and on a GPU from
worker processes with pinned memory, bf16 autocast and TF32 where the GPU has them, and optionally
``torch.compile``. Under torchrun each rank trains a DDP replica (``sentiflow.train.distributed``).
Trainer's own MLflow integration is off (``report_to="none"``): ``EpochLogger`` logs into our one run, and
a ``GpuSampler`` records the GPUs' utilisation through the fit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiflow.families.transformer.model import (
    TransformerClassifier,
    resolve_bf16,
    resolve_device,
    resolve_tf32,
)
from sentiflow.families.transformer.params import TrainParams
from sentiflow.names import (
    BEST_EPOCH,
    BEST_VAL_F1,
    EPOCH_TIME_S,
    FAMILY_TRANSFORMER,
    FIT_TIME_S,
    LABEL_COLUMN,
    SPLIT_METRIC_SUFFIXES,
    TAG_BASE_MODEL,
    TEXT_COLUMN,
    TRAIN_LOSS,
    TRAIN_SAMPLES_PER_S,
    VAL_F1,
    split_metric,
)
from sentiflow.train import TrainingError
from sentiflow.train.artifacts import best_epoch
from sentiflow.train.data import TrainingData
from sentiflow.train.distributed import is_main_process, shared_workdir, world_size
from sentiflow.train.gpu_monitor import GpuSampler, GpuSummary
from sentiflow.train.metrics import classification_metrics
from sentiflow.train.progress_callback import progress_callback
from sentiflow.train.runner import TrainResult, finish, load_data, load_tagged
from sentiflow.train.tracking import training_run

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

log = logging.getLogger(__name__)

#: Trainer prefixes evaluation metrics with ``eval_``; ours are the un-prefixed suffixes (``f1`` ...).
BEST_METRIC = "f1"
#: ``dataloader_num_workers: auto`` on a GPU: collating padded batches from the Arrow file is light, and
#: four workers per rank keep several batches ready without taking the cores tokenization needs.
GPU_LOADER_WORKERS = 4


@dataclass
class FitResult:
    classifier: TransformerClassifier
    history: list[dict[str, float]] = field(default_factory=list)
    fit_time_s: float = 0.0
    best_epoch: int | None = None
    train_samples_per_s: float = 0.0
    #: Mean seconds of one epoch's training steps (evaluation excluded).
    epoch_time_s: float | None = None
    gpu: GpuSummary | None = None


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


#: Rows hashed at once by ``_fingerprint`` (a fixed size, so a split's hash never depends on its chunks).
_HASH_ROWS = 10_000


def _fingerprint(classifier: TransformerClassifier, dataset: Any, split: str) -> str:
    """What the token ids depend on: tokenizer, length, truncation and the rows' texts and labels, hashed
    from the Arrow buffers batch by batch (a memory-mapped split is read once, never held)."""
    import pyarrow as pa

    digest = hashlib.sha256(
        repr(
            (
                getattr(classifier.tokenizer, "name_or_path", ""),
                classifier.max_length,
                classifier.truncation,
                split,
            )
        ).encode()
    )
    for table in dataset.with_format("arrow").iter(batch_size=_HASH_ROWS):
        texts = table.column(TEXT_COLUMN).combine_chunks().cast(pa.large_string())
        offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
            texts.offset : texts.offset + len(texts) + 1
        ]
        digest.update(np.diff(offsets).tobytes())
        data = texts.buffers()[2]
        if data is not None:
            digest.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
        labels = table.column(LABEL_COLUMN).to_numpy()
        digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def encode_dataset(
    classifier: TransformerClassifier, dataset: Any, cache_dir: Path | None = None, split: str = "train"
) -> Any:
    """Token ids (no padding: the collator pads per batch), labels and lengths, as a ``datasets.Dataset``.

    ``dataset`` is a split of ``TrainingData`` (a memory-mapped ``datasets.Dataset``: ``text``, ``label``).
    Tokenized once, with ``map(batched=True)``, by the classifier's own ``encode`` (so training truncates
    exactly as serving does), 1,000 texts at a time. With ``cache_dir`` the result is an Arrow file there,
    memory-mapped by every epoch and every data-loader worker, and found again (by the rows' fingerprint)
    by the other ranks of a distributed run instead of being tokenized N times.
    """

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids = classifier.encode(batch[TEXT_COLUMN])
        return {"input_ids": ids, "length": [len(i) for i in ids]}

    fingerprint = _fingerprint(classifier, dataset, split)
    cache_file = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = str(cache_dir / f"{split}-{fingerprint}.arrow")
    return dataset.rename_column(LABEL_COLUMN, "labels").map(
        tokenize,
        batched=True,
        batch_size=1000,
        remove_columns=[TEXT_COLUMN],
        cache_file_name=cache_file,
        load_from_cache_file=True,
        new_fingerprint=fingerprint,
        desc=f"tokenize {split}",
    )


def compute_metrics(eval_pred: Any) -> dict[str, float]:
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

        def __init__(self, on_epoch: Callable[[int, dict[str, float]], object] | None) -> None:
            self.on_epoch = on_epoch
            self.history: list[dict[str, float]] = []
            self._train_loss: float | None = None
            self._epoch_started: float | None = None
            self._epoch_time: float | None = None
            self.epoch_times: list[float] = []

        def on_epoch_begin(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            self._epoch_started = time.perf_counter()

        def on_epoch_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            if self._epoch_started is not None:
                self._epoch_time = time.perf_counter() - self._epoch_started
                self.epoch_times.append(self._epoch_time)

        def on_log(
            self,
            args: TrainingArguments,
            state: TrainerState,
            control: TrainerControl,
            logs: dict[str, float] | None = None,
            **kwargs: Any,
        ) -> None:
            if logs and "loss" in logs:
                loss = float(logs["loss"])
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"training loss became {loss} at epoch {state.epoch:.2f}: lower learning_rate "
                        "or check the data"
                    )
                self._train_loss = loss

        def on_evaluate(
            self,
            args: TrainingArguments,
            state: TrainerState,
            control: TrainerControl,
            metrics: dict[str, float] | None = None,
            **kwargs: Any,
        ) -> None:
            metrics = metrics or {}
            epoch = round(state.epoch or 0)
            row: dict[str, float] = {"epoch": epoch}
            if self._train_loss is not None:
                row[TRAIN_LOSS] = self._train_loss
            if self._epoch_time is not None:
                row[EPOCH_TIME_S] = self._epoch_time
            for suffix in SPLIT_METRIC_SUFFIXES:
                if f"eval_{suffix}" in metrics:
                    row[split_metric("val", suffix)] = float(metrics[f"eval_{suffix}"])
            val_loss = row.get(split_metric("val", "loss"))
            if val_loss is not None and not math.isfinite(val_loss):
                raise TrainingError(f"validation loss is {val_loss} after epoch {epoch}: training diverged")
            self.history.append(row)
            log.info("epoch %s: %s", epoch, {k: round(v, 4) for k, v in row.items()})
            if self.on_epoch:
                # epoch_time_s stays in the history (history.json): logged per step, the epoch's value would
                # hide the run's summary (the mean over epochs) as the run's latest epoch_time_s
                self.on_epoch(epoch, {k: v for k, v in row.items() if k not in ("epoch", EPOCH_TIME_S)})

    return EpochLogger


def loader_workers(params: TrainParams, device: str) -> int:
    """``dataloader_num_workers``, with ``auto`` (None) resolved: none on CPU, a few per GPU process."""
    if params.dataloader_num_workers is not None:
        return params.dataloader_num_workers
    if device != "cuda":
        return 0  # on CPU the workers would take cores from the training's own threads
    per_rank = max(0, (os.cpu_count() or 1) // max(1, world_size()) - 1)
    return min(GPU_LOADER_WORKERS, per_rank)


def training_arguments(params: TrainParams, output_dir: str, *, device: str, **overrides: Any) -> Any:
    """Our Trainer settings; ``overrides`` let the benchmark build the tutorial set-up from the same base."""
    from transformers import TrainingArguments

    workers = loader_workers(params, device)
    distributed = world_size() > 1
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
        "tf32": resolve_tf32(params.tf32, device),
        "torch_compile": params.torch_compile == "on",
        "dataloader_num_workers": workers,
        # workers kept between epochs and evaluations instead of forked again each time
        "dataloader_persistent_workers": workers > 0,
        "dataloader_pin_memory": params.dataloader_pin_memory != "off" and device == "cuda",
    }
    if distributed:
        # every parameter of a sequence classifier takes part in each step: skip DDP's search for unused ones
        kwargs["ddp_find_unused_parameters"] = False
        if device == "cpu":
            kwargs["ddp_backend"] = "gloo"
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def fit_transformer(
    data: TrainingData,
    classifier: TransformerClassifier,
    params: TrainParams,
    *,
    on_epoch: Callable[[int, dict[str, float]], object] | None = None,
) -> FitResult:
    """Fine-tune ``classifier``, evaluating on the validation split every epoch; returns the best epoch's.

    In a distributed run every rank calls this; ``on_epoch`` is given on rank 0 only, and only rank 0
    samples the GPUs (all of this node's).
    """
    import torch
    from accelerate.utils import extract_model_from_parallel
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    device = resolve_device(params.device)
    # First: on several ranks this starts the process group that shared_workdir and DDP use.
    args = training_arguments(params, "sentiflow-train-unset", device=device)
    logger = _epoch_logger_class()(on_epoch)
    callbacks: list[Any] = [logger, progress_callback()]
    if params.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience))
    sampler = GpuSampler.for_this_machine() if is_main_process() and device == "cuda" else None

    with shared_workdir("sentiflow-train-") as workdir:
        args.output_dir = workdir
        with args.main_process_first(local=True, desc="tokenize"):  # rank 0 writes the cache, others read it
            train_ds = encode_dataset(classifier, data.train, Path(workdir) / "tokens", "train")
            val_ds = encode_dataset(classifier, data.validation, Path(workdir) / "tokens", "validation")
        trainer = Trainer(
            model=classifier.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=classifier.tokenizer,
            data_collator=DataCollatorWithPadding(classifier.tokenizer),
            compute_metrics=compute_metrics,
            callbacks=callbacks,
        )
        started = time.perf_counter()
        try:
            with sampler or contextlib.nullcontext():
                output = trainer.train()
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of memory on {device} with per_device_train_batch_size="
                f"{params.per_device_train_batch_size}, max_length={params.max_length}: lower one of them"
            ) from exc
        fit_time = time.perf_counter() - started
        # The best epoch's weights (load_best_model_at_end), without the autocast wrapper mixed precision
        # puts around ``forward``: the classifier then answers, and exports to ONNX, as the saved folder
        # loads (fp32, its own bf16 autocast only where ``bf16`` says).
        classifier.model = extract_model_from_parallel(trainer.model, keep_fp32_wrapper=False)

    gpu = (
        sampler.summary()
        if sampler is not None
        else GpuSampler(None, reason=f"trained on {device}").summary()
    )
    if is_main_process():
        log.info("%s", gpu.describe())
    best = best_epoch(logger.history)
    return FitResult(
        classifier=classifier,
        history=logger.history,
        fit_time_s=fit_time,
        best_epoch=int(best[BEST_EPOCH]) if best else None,
        train_samples_per_s=float(output.metrics.get("train_samples_per_second", 0.0)),
        epoch_time_s=sum(logger.epoch_times) / len(logger.epoch_times) if logger.epoch_times else None,
        gpu=gpu,
    )


def fit_summary(fit: Any) -> dict[str, float]:
    """The fit's own metrics: time, throughput, best epoch and, where a GPU trained, its utilisation."""
    summary = {FIT_TIME_S: fit.fit_time_s, TRAIN_SAMPLES_PER_S: fit.train_samples_per_s}
    if fit.epoch_time_s is not None:
        summary[EPOCH_TIME_S] = fit.epoch_time_s
    if fit.best_epoch is not None:
        summary[BEST_EPOCH] = float(fit.best_epoch)
        summary[BEST_VAL_F1] = next(h[VAL_F1] for h in fit.history if h["epoch"] == fit.best_epoch)
    if fit.gpu is not None:
        summary.update(fit.gpu.metrics())
    return summary


def run_training(
    manifest_uri: str,
    params: TrainParams,
    *,
    register_model: bool = True,
    registered_model_name: str | None = None,
) -> TrainResult | None:
    """Fine-tune a transformer on the snapshot and register it. Raises ``TrainingError`` on failure.

    Returns None on the ranks above 0 of a distributed run: they train their share and leave the run, the
    evaluation and the registry version to rank 0.
    """
    import mlflow

    if not is_main_process():
        data = load_data(manifest_uri, params)
        fit_transformer(data, build_classifier(params, data.label_names), params)
        return None
    run_name = f"{FAMILY_TRANSFORMER}-{Path(params.model_name).name}"
    with training_run(FAMILY_TRANSFORMER, run_name, params.model_dump(), manifest_uri) as run:
        mlflow.set_tag(TAG_BASE_MODEL, params.model_name)
        data = load_tagged(manifest_uri, params)
        classifier = build_classifier(params, data.label_names)
        fit = fit_transformer(
            data, classifier, params, on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch)
        )
        return finish(
            run,
            fit.classifier,
            data,
            manifest_uri,
            fit_summary(fit),
            history=fit.history,
            register_model=register_model,
            registered_model_name=registered_model_name,
        )


def ship_onnx(classifier: TransformerClassifier, folder: Path) -> None:
    """The ONNX file(s) into the model's folder, and the run's ``onnx_shipped`` tag saying which.

    Built and verified here, once per version, so that the replicas do not each build it when the version
    is deployed; a file that cannot be built or opened raises (``ship_onnx_models``), and the version is not
    logged; one that disagrees with PyTorch is left out with its reason, and the tag says ``none``.
    """
    import mlflow

    from sentiflow.families.transformer.onnx_runtime import ship_onnx_models
    from sentiflow.names import TAG_ONNX_SHIPPED

    mlflow.set_tag(TAG_ONNX_SHIPPED, ",".join(ship_onnx_models(classifier, folder)) or "none")
