"""The tokenized-split cache key and the TF-IDF baseline's row cap (no services)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from datasets import Dataset

from sentiflow.families.tfidf.params import BaselineParams
from sentiflow.families.tfidf.training import check_baseline_rows
from sentiflow.families.transformer.training import _fingerprint
from sentiflow.train import TrainingError

CLASSIFIER = SimpleNamespace(tokenizer=SimpleNamespace(name_or_path="tok"), max_length=64, truncation="head")


def mapped(path: Path, texts: list[str], labels: list[int], chunk: int) -> Dataset:
    """The rows written as an Arrow stream in ``chunk``-row batches, memory-mapped back."""
    schema = pa.schema([("text", pa.large_string()), ("label", pa.int64())])
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, len(texts), chunk):
            writer.write_batch(
                pa.record_batch([texts[start : start + chunk], labels[start : start + chunk]], schema=schema)
            )
    return Dataset.from_file(str(path))


def test_the_cache_key_is_the_rows_whatever_their_layout(tmp_path: Path) -> None:
    """Ranks of a distributed run (each with its own copy of a split) find rank 0's tokenized file."""
    texts = [f"review {i} " + "y" * (i % 13) for i in range(25_000)]  # more rows than one hashed batch
    labels = [i % 3 for i in range(25_000)]
    in_memory = Dataset.from_dict({"text": texts, "label": labels})
    key = _fingerprint(CLASSIFIER, in_memory, "train")
    assert _fingerprint(CLASSIFIER, mapped(tmp_path / "a.arrow", texts, labels, 7_001), "train") == key
    assert _fingerprint(CLASSIFIER, mapped(tmp_path / "b.arrow", texts, labels, 333), "train") == key
    changed = [*texts[:-1], texts[-1] + "!"]
    assert _fingerprint(CLASSIFIER, Dataset.from_dict({"text": changed, "label": labels}), "train") != key
    relabelled = [*labels[:-1], 0 if labels[-1] else 1]
    assert _fingerprint(CLASSIFIER, Dataset.from_dict({"text": texts, "label": relabelled}), "train") != key
    assert _fingerprint(CLASSIFIER, in_memory, "validation") != key
    assert _fingerprint(CLASSIFIER, in_memory.select([2, 1, 0]), "train") != _fingerprint(
        CLASSIFIER, in_memory.select([0, 1, 2]), "train"
    )  # a subset's rows, in its order


def test_the_baseline_refuses_more_rows_than_its_cap_and_says_what_to_do() -> None:
    check_baseline_rows(200_000, BaselineParams())
    check_baseline_rows(10**9, BaselineParams(max_train_rows=None))
    with pytest.raises(TrainingError, match=r"200,001 rows, above its max_train_rows \(200,000\)") as info:
        check_baseline_rows(200_001, BaselineParams())
    assert "train_subset_size" in str(info.value) and "baseline_params" in str(info.value)
