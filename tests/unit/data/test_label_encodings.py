"""Any label encoding and any usual file layout becomes the same snapshot (ids 0..K-1 with names)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from sentiflow.data.collect import CollectError, collect
from sentiflow.data.labels import encode_labels, label_encoding
from sentiflow.data.snapshot import read_manifest, read_snapshot
from sentiflow.data.sources import split_of
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


# --- encodings (pure) --------------------------------------------------------------------------------
def test_negative_integer_ids_become_sentiment_names_in_order() -> None:
    ids, names = encode_labels(pd.Series([-1, 0, 1, 1, -1]), "label")
    assert names == ["negative", "neutral", "positive"] and ids.tolist() == [0, 1, 2, 2, 0]
    ids, names = encode_labels(pd.Series([-1, 1, 1]), "label")
    assert names == ["negative", "positive"] and ids.tolist() == [0, 1, 1]


def test_label_names_list_or_object_name_the_ids() -> None:
    ids, names = encode_labels(pd.Series([-1, 0, 1]), "label", ["bad", "meh", "good"])
    assert names == ["bad", "meh", "good"] and ids.tolist() == [0, 1, 2]
    ids, names = encode_labels(pd.Series([-1, 0, 1]), "label", {"1": "good", "-1": "bad", "0": "meh"})
    assert names == ["bad", "meh", "good"] and ids.tolist() == [0, 1, 2]
    with pytest.raises(CollectError, match="does not name"):
        encode_labels(pd.Series([-1, 0, 1]), "label", {"-1": "bad", "1": "good"})
    with pytest.raises(CollectError, match=r"3 distinct ids .* but 2 label names"):
        encode_labels(pd.Series([-1, 0, 1]), "label", ["bad", "good"])


def test_other_integer_ids_and_string_labels() -> None:
    ids, names = encode_labels(pd.Series([1, 2, 3, 4, 5, 5]), "stars")
    assert names == ["1", "2", "3", "4", "5"] and ids.tolist() == [0, 1, 2, 3, 4, 4]
    ids, names = encode_labels(pd.Series(["joy", "anger", "fear", "joy"]), "emotion")
    assert names == ["anger", "fear", "joy"] and ids.tolist() == [2, 0, 1, 2]
    ids, names = encode_labels(
        pd.Series([0, 1, 1]), "label", ["neg", "neu", "pos"]
    )  # ClassLabel, a class unseen
    assert names == ["negative", "neutral", "positive"] and ids.tolist() == [0, 1, 1]
    ids, names = encode_labels(pd.Series([0.0, 1.0, 1.0]), "label")
    assert names == ["negative", "positive"] and ids.tolist() == [0, 1, 1]
    ids, names = encode_labels(pd.Series([False, True]), "label")
    assert names == ["negative", "positive"] and ids.tolist() == [0, 1]


def test_one_mapping_across_splits() -> None:
    """A split without -1 must not shift 0 and 1 to ids 0 and 1 of its own."""
    mapping, names = label_encoding([pd.Series([-1, 0, 1]), pd.Series([0, 1])], "label")
    assert mapping == {-1: 0, 0: 1, 1: 2} and names == ["negative", "neutral", "positive"]


def test_split_names_of_usual_layouts() -> None:
    assert split_of("train.csv") == "train"
    assert split_of("data/train-00000-of-00001.parquet") == "train"
    assert split_of("plain_text/validation-00000-of-00002.parquet") == "validation"
    assert split_of("test/part-0.jsonl") == "test"
    assert split_of("dev_set.tsv") == "validation"
    assert split_of("data/unsupervised-00000-of-00001.parquet") is None


# --- collect (real S3) --------------------------------------------------------------------------------
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
