"""Quality of the fine-tuned transformer: offline MiniLM, 1 epoch on 4,000 IMDb reviews, max_length 256.

Training goes through the product's own ``fit_transformer`` (the same defaults as ``sentiflow-train``); the
score is accuracy on the full cleaned IMDb test split (about 25k reviews). The fine-tuned model is saved
under ``benchmarks/.cache/`` so ``serve_load.py --check-agreement`` can compare serving runtimes on a model
that has learnt something. Run:

    .venv/bin/python benchmarks/transformer_quality.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

from sentiflow.data.clean import clean_frame
from sentiflow.data.snapshot import Manifest
from sentiflow.families.transformer.params import TrainParams
from sentiflow.families.transformer.training import build_classifier, fit_transformer
from sentiflow.train.data import TrainingData

SHARED = Path(__file__).resolve().parents[2] / "shared"
LABELS = ["negative", "positive"]
SAVED_MODEL = Path(__file__).resolve().parent / ".cache" / "minilm-imdb-4000"


def balanced(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    parts = [frame[frame["label"] == label].sample(n // 2, random_state=seed) for label in (0, 1)]
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=None, help="default: the whole test split")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--save-dir", type=Path, default=SAVED_MODEL, help="where the fine-tuned model goes")
    args = parser.parse_args()

    train_all, _ = clean_frame(pd.read_parquet(SHARED / "data" / "imdb" / "train.parquet"))
    test, _ = clean_frame(pd.read_parquet(SHARED / "data" / "imdb" / "test.parquet"))
    train = balanced(train_all, args.train_size, seed=42)
    validation = balanced(train_all[~train_all["text"].isin(train["text"])], args.val_size, seed=43)
    if args.test_size:
        test = test.sample(args.test_size, random_state=44).reset_index(drop=True)
    manifest = Manifest(
        kind="clean", run_id="benchmark", source={"path": "imdb"}, label_names=LABELS, splits={}
    )
    data = TrainingData.from_frames(manifest, train=train, validation=validation, test=test)
    params = TrainParams(
        model_name=args.model,
        num_train_epochs=1,
        max_length=args.max_length,
        early_stopping_patience=None,
        device="cpu",
    )
    fit = fit_transformer(data, build_classifier(params, data.label_names), params)
    fit.classifier.save(args.save_dir)
    start = time.perf_counter()
    probs = fit.classifier.predict_proba(test["text"].tolist(), batch_size=64)
    predict_s = time.perf_counter() - start
    accuracy = float((probs.argmax(axis=1) == test["label"].to_numpy()).mean())
    val_f1 = fit.history[-1].get("val_f1") if fit.history else None
    result = {
        "model": Path(args.model).name,
        "train_rows": len(train),
        "val_rows": len(validation),
        "test_rows": len(test),
        "max_length": args.max_length,
        "params": params.model_dump(),
        "fit_time_s": round(fit.fit_time_s, 1),
        "train_samples_per_s": round(fit.train_samples_per_s, 2),
        "val_f1": val_f1,
        "test_accuracy": round(accuracy, 4),
        "test_predict_s": round(predict_s, 1),
        "saved_model": str(
            args.save_dir.resolve().relative_to(Path.cwd())
            if args.save_dir.resolve().is_relative_to(Path.cwd())
            else args.save_dir
        ),
    }
    record(
        "transformer_quality",
        result,
        f"Offline all-MiniLM-L6-v2 fine-tuned by `fit_transformer` with the product's defaults (lr 5e-5, "
        f"batch 16, warm-up 0.1, weight decay 0.01, attention and hidden dropout 0, dynamic padding, "
        f"length-grouped batches), 1 epoch on {len(train):,} balanced cleaned IMDb train reviews at "
        f"max_length {args.max_length} (fit {fit.fit_time_s:.0f} s, "
        f"{fit.train_samples_per_s:.2f} samples/s), validation F1 {val_f1:.4f} on {len(validation):,} "
        f"held-out train reviews. Scored on the cleaned IMDb test split ({len(test):,} reviews): "
        f"**test accuracy {accuracy:.4f}** (prediction {predict_s:.0f} s). The TF-IDF baseline on the "
        "full 25k train: 0.9047 (`baseline_quality`).\n",
    )
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
