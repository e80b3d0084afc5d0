"""Pack what a GPU training pod reads into ``.gpu/`` (git-ignored) for a run on a machine without network.

The GPU machine of this workplace reaches no S3, no MLflow and no Hub, and one transfer carries at most
64 MiB. So the clean snapshot is written as a local snapshot (the training entrypoint reads local paths
wherever it reads ``s3://``), and the pretrained checkpoint is stored in float16 (45 MB instead of 91 MB;
training loads it in float32, see ``TransformerClassifier.from_pretrained``). The snapshot is made with the
pipeline's own steps' rules: validation carved from train (10%, stratified, seed 42, as ``collect`` does),
then ``clean_frame`` on every split. Run on the GPU machine with ``benchmarks/gpu_pod_run.sh``.

    .venv/bin/python benchmarks/gpu_pod_prepare.py            # writes .gpu/data and .gpu/model
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from sentiflow.data.clean import clean_frame
from sentiflow.data.collect import _stratified_split
from sentiflow.data.snapshot import Manifest, SplitInfo, label_counts
from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, TEXT_COLUMN
from sentiflow.storage import sha256_hex

REPO = Path(__file__).resolve().parents[1]
LABEL_NAMES = ["negative", "positive"]
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def write_local_snapshot(imdb: Path, out: Path, seed: int) -> Path:
    """Clean IMDb splits as zstd parquet plus a manifest whose split URIs are paths relative to the repo."""
    out.mkdir(parents=True, exist_ok=True)
    frames = {
        s: pd.read_parquet(imdb / f"{s}.parquet")[[TEXT_COLUMN, LABEL_COLUMN]] for s in ("train", "test")
    }
    frames["train"], frames["validation"] = _stratified_split(frames["train"], 0.1, seed)
    splits, dropped = {}, {}
    for name in ("train", "validation", "test"):
        frame, dropped[name] = clean_frame(frames[name].reset_index(drop=True))
        path = out / f"{name}.parquet"
        frame.to_parquet(path, index=False, compression="zstd", compression_level=19)
        data = path.read_bytes()
        splits[name] = SplitInfo(
            uri=str(path.relative_to(REPO)),
            rows=len(frame),
            label_counts=label_counts(frame, LABEL_NAMES),
            sha256=sha256_hex(data),
        )
    manifest = Manifest(
        kind="clean",
        run_id="gpu-pod-benchmark",
        source={"source": str(imdb), "split_origin": {"validation": f"carved from train (10%, seed {seed})"}},
        label_names=LABEL_NAMES,
        splits=splits,
        dropped=dropped,
    )
    target = out / MANIFEST_FILE
    target.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
    return target


def write_half_checkpoint(model: Path, out: Path) -> None:
    """The checkpoint's weights in float16 plus its tokenizer and config, unchanged otherwise."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(model / "model.safetensors")
    save_file(
        {k: v.half().contiguous() for k, v in weights.items()}, out / "model.safetensors", {"format": "pt"}
    )
    for name in TOKENIZER_FILES:
        shutil.copy(model / name, out / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "data" / "imdb")
    parser.add_argument("--model", type=Path, default=REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    manifest = write_local_snapshot(args.imdb, args.out / "data", args.seed)
    write_half_checkpoint(args.model, args.out / "model")
    print(f"snapshot manifest: {manifest.relative_to(REPO)}; model: {(args.out / 'model').relative_to(REPO)}")


if __name__ == "__main__":
    main()
