"""Pack what a GPU training pod reads into ``.gpu/`` (git-ignored) for a run on a machine without network.

The GPU machine of this workplace reaches no S3, no MLflow and no Hub, and one transfer carries at most
64 MiB. So the clean snapshot is written as a local snapshot (the training entrypoint reads local paths
wherever it reads ``s3://``), and the pretrained checkpoint is stored in float16 (45 MB instead of 91 MB;
training loads it in float32, see ``TransformerClassifier.from_pretrained``). The snapshot is made with the
pipeline's own steps' rules: validation carved from train (10%, stratified, seed 42, as ``collect`` does),
then ``clean_frame`` on every split. ``--wheels`` also fetches, with pip, the wheels for the device's
Python 3.12 of what the training entrypoint needs and its image lacks (MLflow, datasets, pydantic ...):
everything those packages pull in, minus what the device image already holds (``DEVICE_HAS``, from its
package list). Run on the GPU machine with ``benchmarks/gpu_pod_run.sh``.

    echo /.gpu/ >> "$(git rev-parse --git-common-dir)/info/exclude"   # once: .gpu/ travels as a carried path
    .venv/bin/python benchmarks/gpu_pod_prepare.py --wheels   # writes .gpu/data, .gpu/model and .gpu/whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiflow.data.clean import clean_frame
from sentiflow.data.snapshot import Manifest, PartInfo, SplitInfo, label_counts
from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, TEXT_COLUMN

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
    train = frames["train"]
    frames["train"], frames["validation"] = train_test_split(
        train, test_size=0.1, random_state=seed, stratify=train[LABEL_COLUMN]
    )
    splits, dropped = {}, {}
    for name in ("train", "validation", "test"):
        frame, dropped[name] = clean_frame(frames[name].reset_index(drop=True))
        path = out / f"{name}.parquet"
        frame.to_parquet(path, index=False, compression="zstd", compression_level=19)
        data = path.read_bytes()
        counts = label_counts(frame, LABEL_NAMES)
        part = PartInfo(
            uri=str(path.relative_to(REPO)),
            rows=len(frame),
            sha256=hashlib.sha256(data).hexdigest(),
            label_counts=counts,
        )
        splits[name] = SplitInfo(rows=len(frame), label_counts=counts, parts=[part])
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


#: What the entrypoint imports beyond the device image (``sentiflow.train``, the MLflow server, the NVML
#: sampler), pinned by requirements/constraints.txt. Not boto3 (16 MiB of botocore): the device reads the
#: snapshot from local paths, and ``sentiflow.storage`` imports boto3 only for ``s3://``. The wheels
#: (about 36 MiB) and the snapshot (19 MiB) then travel in one call, the model (45 MiB) in the next.
WHEELS_FOR = ("mlflow", "datasets", "pydantic-settings", "nvidia-ml-py")
#: Packages the device image holds (its package list); their wheels are dropped after the download.
DEVICE_HAS = frozenset(
    [
        "accelerate",
        "aiohappyeyeballs",
        "aiohttp",
        "aiosignal",
        "anyio",
        "attrs",
        "certifi",
        "charset-normalizer",
        "click",
        "cloudpickle",
        "contourpy",
        "cycler",
        "filelock",
        "fonttools",
        "frozenlist",
        "fsspec",
        "h11",
        "hf-xet",
        "httpcore",
        "httpx",
        "huggingface-hub",
        "idna",
        "jinja2",
        "joblib",
        "kiwisolver",
        "markdown",
        "markdown-it-py",
        "markupsafe",
        "matplotlib",
        "mdurl",
        "mpmath",
        "multidict",
        "networkx",
        "numpy",
        "nvidia-ml-py",
        "packaging",
        "pandas",
        "pillow",
        "propcache",
        "protobuf",
        "psutil",
        "pyarrow",
        "pygments",
        "pyparsing",
        "python-dateutil",
        "pyyaml",
        "regex",
        "requests",
        "rich",
        "safetensors",
        "scikit-learn",
        "scipy",
        "setuptools",
        "six",
        "sympy",
        "threadpoolctl",
        "tokenizers",
        "torch",
        "tqdm",
        "transformers",
        "triton",
        "typing-extensions",
        "urllib3",
        "werkzeug",
        "xxhash",
        "yarl",
        "zipp",
    ]
)


def _dist_name(wheel: Path) -> str:
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def download_wheels(out: Path) -> list[Path]:
    """pip download (cp312, manylinux, wheels only) of ``WHEELS_FOR`` and their needs, less the image's."""
    out.mkdir(parents=True, exist_ok=True)
    platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 27, 28, 31, 34)] + ["manylinux2014_x86_64"]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
    ]
    command += [
        "--implementation",
        "cp",
        "-d",
        str(out),
        "-c",
        str(REPO / "requirements" / "constraints.txt"),
    ]
    for platform in platforms:
        command += ["--platform", platform]
    subprocess.run([*command, *WHEELS_FOR], check=True)
    kept = []
    for wheel in sorted(out.glob("*.whl")):
        name = _dist_name(wheel)
        if name in DEVICE_HAS or name.startswith(("nvidia-", "cuda-")):
            wheel.unlink()
        else:
            kept.append(wheel)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "data" / "imdb")
    parser.add_argument("--model", type=Path, default=REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--wheels", action="store_true", help="also fetch the device's wheels into .gpu/whl")
    args = parser.parse_args()
    if args.wheels:
        kept = download_wheels(args.out / "whl")
        size = sum(w.stat().st_size for w in kept) / 2**20
        print(f"{len(kept)} wheels, {size:.1f} MiB in {args.out / 'whl'}")
    manifest = write_local_snapshot(args.imdb, args.out / "data", args.seed)
    write_half_checkpoint(args.model, args.out / "model")
    print(f"snapshot manifest: {manifest.relative_to(REPO)}; model: {(args.out / 'model').relative_to(REPO)}")


if __name__ == "__main__":
    main()
