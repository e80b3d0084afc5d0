"""Any label encoding becomes ids 0..K-1 with names; usual file layouts' split names.

Collecting those layouts into a snapshot in the real S3 is tests/integration/data/test_collect_layouts.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from sentiflow.data.collect import CollectError
from sentiflow.data.labels import encode_labels, label_encoding
from sentiflow.data.sources import split_of


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
