"""The tutorial set-up on the GPU, the side-by-side of ``gpu_pod_run.sh compare``: what the fed GPU is
measured against.

The Hugging Face text-classification tutorial: ``tokenizer(..., padding="max_length", truncation=True)``
through ``datasets.map``, ``Trainer`` with its defaults (batch 8, learning rate 5e-5, no warm-up, random
order, float32, no TF32, no loader workers), on the same snapshot, model, GPU and max_length as the preset
run. One difference, forced by transformers 5: the checkpoint is loaded in float32, as the tutorial's
transformers 4 did (the prepared checkpoint is stored in float16, see ``gpu_pod_prepare.py``). GPU
utilisation is sampled through the fit with sentiflow's own ``GpuSampler`` (NVML), the same as the run's.

    PYTHONPATH=include python3 benchmarks/gpu_tutorial.py --manifest .gpu/data/manifest.json \\
        --model .gpu/model --max-length 512 --epochs 1 --output $OUT/tutorial.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from sentiflow.train.data import load_training_data
from sentiflow.train.gpu_monitor import GpuSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=".gpu/data/manifest.json")
    parser.add_argument("--model", default=".gpu/model")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--smoke", type=int, default=None, help="N train and N test rows: a CPU check only")
    args = parser.parse_args()

    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    data = load_training_data(args.manifest, train_subset_size=args.smoke)
    if args.smoke:
        data.test = data.test.select(range(min(args.smoke, len(data.test))))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(data.label_names), dtype=torch.float32
    )

    def tokenized(ds):  # a memory-mapped split of TrainingData: text, label
        return ds.map(
            lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=args.max_length),
            batched=True,
        )

    train, test = tokenized(data.train), tokenized(data.test)

    class EpochClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, *a, **k):
            self._start = time.perf_counter()

        def on_epoch_end(self, *a, **k):
            self.times.append(time.perf_counter() - self._start)

    clock = EpochClock()
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            num_train_epochs=args.epochs,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_strategy="epoch",
        )
        trainer = Trainer(model=model, args=targs, train_dataset=train, callbacks=[clock])
        sampler = GpuSampler.for_this_machine()
        started = time.perf_counter()
        with sampler:
            output = trainer.train()
        fit_time = time.perf_counter() - started
        predictions = trainer.predict(test)
    accuracy = float(np.mean(np.asarray(predictions.predictions).argmax(-1) == predictions.label_ids))
    gpu = sampler.summary()
    result = {
        "setup": "tutorial: padding=max_length, Trainer defaults",
        "max_length": args.max_length,
        "num_train_epochs": args.epochs,
        "per_device_train_batch_size": targs.per_device_train_batch_size,
        "bf16": targs.bf16,
        "train_rows": len(train),
        "test_rows": len(test),
        "fit_time_s": fit_time,
        "epoch_time_s": sum(clock.times) / len(clock.times) if clock.times else None,
        "train_samples_per_s": float(output.metrics.get("train_samples_per_second", 0.0)),
        "test_accuracy": accuracy,
        "gpu": gpu.describe(),
        **gpu.metrics(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
