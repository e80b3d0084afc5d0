"""A Hugging Face Hub dataset as a streamed source: ``datasets``' Arrow cache files, read batch by batch.

Why Arrow files and not ``streaming=True``: ``load_dataset`` writes the dataset once into memory-mapped
Arrow files on disk; reading them in Arrow batches costs no Python object per row, gives exact row counts
and can be read twice (collect reads the label column first, then the rows) without downloading again.
Memory stays bounded: pages of a memory-mapped file belong to the page cache, not to the process' heap.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pyarrow as pa

from sentiflow.data.errors import CollectError
from sentiflow.data.sources import SPLIT_ALIASES, BatchReader, SourceSplit


def _reader(split: Any) -> BatchReader:
    def read(
        columns: list[str] | None, string_columns: list[str], batch_rows: int
    ) -> Generator[pa.Table, None, None]:
        selected = split.select_columns(columns) if columns else split
        yield from selected.with_format("arrow").iter(batch_size=batch_rows)

    return read


def hub_splits(name: str, config_name: str | None) -> tuple[dict[str, SourceSplit], dict[str, list[str]]]:
    """The dataset's train/validation/test splits, and ClassLabel names per column."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a declared dependency
        raise CollectError("Hugging Face `datasets` is not installed") from exc
    try:
        dataset_dict = datasets.load_dataset(name, config_name)
    except Exception as exc:
        raise CollectError(
            f"dataset {name!r} could not be loaded: it is not a local path, not an s3:// URI, and the "
            f"Hugging Face Hub said: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    splits: dict[str, SourceSplit] = {}
    class_names: dict[str, list[str]] = {}
    for split_name, split in dataset_dict.items():
        canonical = SPLIT_ALIASES.get(split_name.lower())
        if canonical is None or canonical in splits:
            continue  # e.g. IMDb's "unsupervised" split has no labels
        splits[canonical] = SourceSplit(canonical, _reader(split))
        for column, feature in split.features.items():
            if isinstance(feature, datasets.ClassLabel):
                class_names[column] = list(feature.names)
    if "train" not in splits:
        raise CollectError(f"dataset {name!r} has splits {list(dataset_dict)} but none is a train split")
    return splits, class_names
