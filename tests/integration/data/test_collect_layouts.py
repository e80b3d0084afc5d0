"""Any label encoding and any usual file layout (local folders, S3 prefixes) becomes the same snapshot in the
real local S3 (ids 0..K-1 with names). The encodings alone: tests/unit/data/test_label_encodings.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from sentiflow.data.collect import CollectError, collect
from sentiflow.data.snapshot import read_manifest, read_snapshot
from sentiflow.storage import ObjectStore

WORDS = {
    "negative": "dreadful boring mess",
    "neutral": "an ordinary average film",
    "positive": "a joyful gem",
}


def frame(labels: list, n: int = 30, names: list[str] | None = None) -> pd.DataFrame:
    """``n`` rows cycling through ``labels``; the text says the class (``names`` aligned with labels)."""
    names = names or [str(v) for v in labels]
    rows = [(f"row {i}: {WORDS.get(names[i % len(labels)], names[i % len(labels)])}", labels[i % len(labels)])
            for i in range(n)]  # fmt: skip
    return pd.DataFrame(rows, columns=["text", "label"])


def test_hub_style_shards_in_a_data_subfolder(store: ObjectStore, tmp_path: Path) -> None:
    data = tmp_path / "tweets" / "data"
    data.mkdir(parents=True)
    train = frame([-1, 0, 1], 60, ["negative", "neutral", "positive"])
    train.iloc[:30].to_parquet(data / "train-00000-of-00002.parquet")
    train.iloc[30:].to_parquet(data / "train-00001-of-00002.parquet")
    frame([-1, 0, 1], 15).to_parquet(data / "validation-00000-of-00001.parquet")
    manifest_uri = collect(str(tmp_path / "tweets"), run_id="hub-shards", store=store)
    manifest, frames = read_snapshot(store, manifest_uri)
    assert manifest.label_names == ["negative", "neutral", "positive"]
    assert manifest.source["label_ids"] == {"-1": 0, "0": 1, "1": 2}
    assert manifest.source["split_origin"]["validation"] == "source"
    assert manifest.rows()["validation"] == 15 and manifest.rows()["train"] + manifest.rows()["test"] == 60
    assert set(frames["train"]["label"]) == {0, 1, 2}
    negative_rows = frames["train"][frames["train"]["text"].str.contains("dreadful")]
    assert set(negative_rows["label"]) == {0}  # -1 → negative, in every shard


def test_folders_of_json_lines_and_of_csv(store: ObjectStore, tmp_path: Path) -> None:
    jsonl = tmp_path / "jsonl"
    for split, n in (("train", 40), ("test", 12)):
        (jsonl / split).mkdir(parents=True)
        frame(["pos", "neg"], n).to_json(jsonl / split / "part-0.jsonl", orient="records", lines=True)
    manifest = read_manifest(store, collect(str(jsonl), run_id="jsonl", store=store))
    assert manifest.label_names == ["negative", "positive"] and manifest.rows()["test"] == 12

    csvs = tmp_path / "csv"
    csvs.mkdir()
    frame(["joy", "anger", "fear"], 45).to_csv(csvs / "train.csv", index=False)
    frame(["joy", "anger", "fear"], 9).to_csv(csvs / "dev.csv", index=False)
    manifest = read_manifest(store, collect(str(csvs), run_id="csv-folder", store=store))
    assert manifest.label_names == ["anger", "fear", "joy"] and manifest.rows()["validation"] == 9


def test_label_names_parameter_on_an_s3_folder(store: ObjectStore) -> None:
    for split, n in (("train", 45), ("test", 15)):
        buffer = io.BytesIO()
        frame([-1, 0, 1], n).to_parquet(buffer)
        store.put_bytes(store.uri("inputs", "ids", f"{split}.parquet"), buffer.getvalue())
    uri = collect(
        str(store.uri("inputs", "ids")), run_id="ids", label_names=["bad", "meh", "good"], store=store
    )
    assert read_manifest(store, uri).label_names == ["bad", "meh", "good"]


def test_one_class_and_a_split_missing_a_class_are_clear_errors(store: ObjectStore, tmp_path: Path) -> None:
    single = tmp_path / "single"
    single.mkdir()
    frame(["positive"], 20).to_csv(single / "train.csv", index=False)
    with pytest.raises(CollectError, match="label column 'label' has a single class \\('positive'\\)"):
        collect(str(single), run_id="single-class", store=store)

    gap = tmp_path / "gap"
    gap.mkdir()
    frame(["negative", "neutral", "positive"], 60).to_csv(gap / "train.csv", index=False)
    frame(["negative", "positive"], 10).to_csv(gap / "test.csv", index=False)
    with pytest.raises(CollectError, match=r"the test split has no rows of class\(es\) \['neutral'\]"):
        collect(str(gap), run_id="gap", store=store)
    assert not store.exists(store.uri("datasets", "gap", "raw", "manifest.json"))
