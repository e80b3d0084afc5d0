"""Training data as memory-mapped Hugging Face datasets (real S3): the rows and subsets the pandas reader
gave, from snapshots of many parts and from version 1 snapshots, and the same refusals of bad data."""

from __future__ import annotations

import gc
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentiflow.data.manifest import sign_manifest, signature_uri
from sentiflow.data.snapshot import read_manifest, read_snapshot, write_snapshot
from sentiflow.settings.components import DataSettings
from sentiflow.storage import ObjectStore
from sentiflow.train import TrainingError
from sentiflow.train.data import label_ids, load_training_data, text_chunks

NAMES = ["negative", "neutral", "positive"]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [f"review {seed}-{i} " + "x" * int(k) for i, k in enumerate(rng.integers(0, 40, n))]
    return pd.DataFrame({"text": texts, "label": rng.integers(0, 3, n)})


@pytest.fixture(scope="module")
def many_parts(stack) -> str:
    store = ObjectStore()
    store.ensure_bucket()
    frames = {"train": frame(500, 0), "validation": frame(120, 1), "test": frame(90, 2)}
    return write_snapshot(
        store, store.uri("datasets", "hf-many", "clean"), frames, kind="clean", run_id="hf-many",
        source={}, label_names=NAMES, settings=DataSettings(part_rows=37, batch_rows=11),
    )  # fmt: skip


def test_splits_are_memory_mapped_with_the_rows_and_subsets_pandas_gave(many_parts: str) -> None:
    store = ObjectStore()
    assert len(read_manifest(store, many_parts).splits["train"].parts) == 14
    _, frames = read_snapshot(store, many_parts)
    data = load_training_data(many_parts, train_subset_size=200, eval_subset_size=50, seed=7, store=store)
    expected = {  # what training read before: whole splits in pandas, DataFrame.sample(random_state=seed)
        "train": frames["train"].sample(n=200, random_state=7),
        "validation": frames["validation"].sample(n=50, random_state=7),
        "test": frames["test"],
    }
    for name, rows in expected.items():
        dataset = getattr(data, name)
        assert [t for chunk in text_chunks(dataset, 64) for t in chunk] == rows["text"].tolist(), name
        assert label_ids(dataset).tolist() == rows["label"].tolist(), name
        assert dataset.cache_files, name  # on disk, memory-mapped, not in the process
    folder = Path(data.train.cache_files[0]["filename"]).parent
    assert folder.exists()
    del data, dataset
    gc.collect()
    assert not folder.exists()  # the work folder goes with the data


def _v1_snapshot(store: ObjectStore, name: str, train: pd.DataFrame) -> str:
    """A version 1 snapshot (one parquet object per split, written by pandas: any column types)."""
    prefix = store.uri("datasets", name, "clean")
    splits = {}
    for split in ("train", "validation", "test"):
        buffer = io.BytesIO()
        (train if split == "train" else train.dropna()).to_parquet(buffer, index=False)
        uri = prefix.join(f"{split}.parquet")
        store.put_bytes(uri, buffer.getvalue())
        splits[split] = {"uri": str(uri), "rows": len(train), "label_counts": {},
                         "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}  # fmt: skip
    manifest = {"schema_version": 1, "kind": "clean", "run_id": name, "source": {}, "label_names": NAMES[:2],
                "splits": splits}  # fmt: skip
    payload = json.dumps(manifest).encode()
    store.put_bytes(prefix.join("manifest.json"), payload)
    store.put_bytes(signature_uri(str(prefix.join("manifest.json"))), str(sign_manifest(payload)).encode())
    return str(prefix.join("manifest.json"))


def test_version_1_snapshots_train_and_bad_ones_are_refused_for_the_whole_split(stack) -> None:
    store = ObjectStore()
    store.ensure_bucket()
    floats = pd.DataFrame({"text": ["a good film", "a bad one", "fine"], "label": [1.0, 0.0, 1.0]})
    data = load_training_data(_v1_snapshot(store, "hf-v1", floats), store=store)
    assert label_ids(data.train).tolist() == [1, 0, 1] and len(data.test) == 3
    cases = {
        r"not integer ids, e.g. \[0.5\]": floats.assign(label=[1.0, 0.5, 0.0]),
        "1 rows without a label": floats.assign(label=[1.0, np.nan, 0.0]),
        "1 rows without text": floats.assign(text=["a", None, "b"]),
        r"label ids \[2, 7\] outside \[0, 2\)": floats.assign(label=[7, 2, 0]),
    }
    for i, (message, bad) in enumerate(cases.items()):
        with pytest.raises(TrainingError, match=f"split 'train' has .*{message}"):
            load_training_data(_v1_snapshot(store, f"hf-bad-{i}", bad), store=store)
