"""Read a clean snapshot for training as Hugging Face ``datasets`` and refuse data that would train a wrong
model silently.

Each split's parts are streamed (``iter_batches``: one batch in memory, every part's sha256 checked) into
one Arrow file per split in a work folder, checked batch by batch on the way, then opened with
``datasets.Dataset.from_file``: memory-mapped, so the rows stay on disk (and in the page cache) and a split
of any size costs no process memory. Tokenization (``families.transformer.training.encode_dataset``) maps
these into an on-disk cache in turn. Disk: about the split's text, uncompressed, in the work folder (a
temporary folder removed with the ``TrainingData`` unless the caller names one).

A subset (``train_subset_size``/``eval_subset_size``) is ``Dataset.select`` of the positions
``RandomState(seed).choice`` draws: the rows, in that order, that ``DataFrame.sample(random_state=seed)``
draws from the whole split.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sentiflow.data.snapshot import Manifest, SnapshotError, iter_batches, read_manifest
from sentiflow.names import DEFAULT_SEED, LABEL_COLUMN, SPLITS, TEXT_COLUMN
from sentiflow.storage import ObjectStore
from sentiflow.train import TrainingError

if TYPE_CHECKING:
    from datasets import Dataset

#: What a training split holds, whatever the snapshot's own types (a version 1 part may hold float labels).
TRAINING_SCHEMA = pa.schema([pa.field(TEXT_COLUMN, pa.large_string()), pa.field(LABEL_COLUMN, pa.int64())])


@dataclass
class TrainingData:
    """The three splits as memory-mapped ``datasets.Dataset`` (columns ``text``, ``label``)."""

    manifest: Manifest
    train: Dataset
    validation: Dataset
    test: Dataset
    #: Keeps the temporary folder of the Arrow files as long as the datasets are used.
    workdir: Any = field(default=None, repr=False)

    @property
    def label_names(self) -> list[str]:
        return self.manifest.label_names

    @classmethod
    def from_frames(cls, manifest: Manifest, **frames: pd.DataFrame) -> TrainingData:
        """In-memory splits (``train``, ``validation``, ``test`` frames): benchmarks and tests."""
        from datasets import Dataset

        splits = {
            name: Dataset.from_dict(
                {
                    TEXT_COLUMN: frame[TEXT_COLUMN].astype(str).tolist(),
                    LABEL_COLUMN: frame[LABEL_COLUMN].astype(int).tolist(),
                }
            )
            for name, frame in frames.items()
        }
        return cls(manifest=manifest, **splits)


def label_ids(dataset: Dataset) -> np.ndarray:
    """The label ids of a split, as one int64 array (8 bytes a row)."""
    column = dataset.with_format("arrow")[LABEL_COLUMN]
    return np.asarray(column.to_numpy(), dtype=np.int64)


def text_chunks(dataset: Dataset, rows: int) -> Iterator[list[str]]:
    """The texts of a split in order, ``rows`` at a time (only one chunk becomes Python strings)."""
    for start in range(0, len(dataset), rows):
        yield dataset[start : start + rows][TEXT_COLUMN]


class _SplitCheck:
    """The checks of one split, accumulated batch by batch and reported as if on the whole split."""

    def __init__(self, name: str, num_labels: int) -> None:
        self.name, self.num_labels = name, num_labels
        self.rows = self.no_label = self.no_text = 0
        self.not_ids: list[Any] = []  # the first few non-integer labels, in order of appearance
        self.outside: set[int] = set()  # the smallest few out-of-range ids

    def batch(self, frame: pd.DataFrame) -> pa.RecordBatch:
        """Check one batch; its rows in the training schema (texts as str, labels as int ids)."""
        missing = {TEXT_COLUMN, LABEL_COLUMN} - set(frame.columns)
        if missing:
            raise TrainingError(
                f"split {self.name!r} lacks column(s) {sorted(missing)}; it has {list(frame.columns)}"
            )
        self.rows += len(frame)
        labels, texts = frame[LABEL_COLUMN], frame[TEXT_COLUMN]
        self.no_label += int(labels.isna().sum())
        self.no_text += int(texts.isna().sum())
        numeric = pd.to_numeric(labels, errors="coerce")
        if not pd.api.types.is_integer_dtype(labels):
            bad = labels.notna() & (numeric.isna() | (numeric != np.round(numeric)))
            for value in labels[bad].unique().tolist():
                if len(self.not_ids) < 5 and value not in self.not_ids:
                    self.not_ids.append(value)
        ids = numeric.fillna(0).round().astype(np.int64)
        self.outside.update(ids[(ids < 0) | (ids >= self.num_labels)].unique().tolist())
        self.outside = set(sorted(self.outside)[:5])
        return pa.RecordBatch.from_pandas(
            pd.DataFrame({TEXT_COLUMN: texts.astype(str), LABEL_COLUMN: ids}),
            schema=TRAINING_SCHEMA,
            preserve_index=False,
        )

    def finish(self) -> None:
        """The first failed check over the whole split, in the order the checks have always run."""
        name = self.name
        if self.rows == 0:
            raise TrainingError(f"split {name!r} is empty")
        if self.no_label:
            raise TrainingError(f"split {name!r} has {self.no_label} rows without a label")
        if self.not_ids:
            raise TrainingError(f"split {name!r} has labels that are not integer ids, e.g. {self.not_ids}")
        if self.outside:
            raise TrainingError(
                f"split {name!r} has label ids {sorted(self.outside)} outside "
                f"[0, {self.num_labels}) — the manifest names {self.num_labels} labels"
            )
        if self.no_text:
            raise TrainingError(f"split {name!r} has {self.no_text} rows without text")


def load_split(
    store: ObjectStore,
    manifest: Manifest,
    name: str,
    folder: Path,
    *,
    subset_size: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Dataset:
    """One split, checked, as a memory-mapped ``Dataset`` (``folder/<name>.arrow``), subset with ``seed``."""
    from datasets import Dataset

    check = _SplitCheck(name, manifest.num_labels)
    path = folder / f"{name}.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, TRAINING_SCHEMA) as writer:
        for batch in iter_batches(store, manifest, name):
            writer.write_batch(check.batch(batch.to_pandas()))
    check.finish()
    dataset = Dataset.from_file(str(path))
    if subset_size is None or subset_size >= len(dataset):
        return dataset
    return dataset.select(np.random.RandomState(seed).choice(len(dataset), size=subset_size, replace=False))


def load_training_data(
    manifest_uri: str,
    *,
    train_subset_size: int | None = None,
    eval_subset_size: int | None = None,
    seed: int = DEFAULT_SEED,
    store: ObjectStore | None = None,
    workdir: Path | None = None,
) -> TrainingData:
    """The snapshot's train, validation and test splits, checked, memory-mapped from ``workdir`` (default:
    a temporary folder that lives as long as the returned ``TrainingData``)."""
    store = store or ObjectStore()
    try:
        manifest = read_manifest(store, manifest_uri)
    except SnapshotError as exc:
        raise TrainingError(f"cannot read snapshot {manifest_uri}: {exc}") from exc
    missing = [s for s in SPLITS if s not in manifest.splits]
    if missing:
        raise TrainingError(
            f"snapshot {manifest_uri} lacks split(s) {missing}; training needs {list(SPLITS)}"
        )
    if manifest.num_labels < 2:
        raise TrainingError(f"snapshot {manifest_uri} names {manifest.num_labels} label(s); need at least 2")
    temporary = None if workdir else tempfile.TemporaryDirectory(prefix="sentiflow-data-")
    folder = Path(workdir or temporary.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": train_subset_size, "validation": eval_subset_size, "test": None}
    try:
        splits = {
            name: load_split(store, manifest, name, folder, subset_size=sizes[name], seed=seed)
            for name in SPLITS
        }
    except SnapshotError as exc:
        raise TrainingError(f"cannot read snapshot {manifest_uri}: {exc}") from exc
    if len(np.unique(label_ids(splits["train"]))) < 2:
        raise TrainingError("the training split has a single class; a classifier cannot be trained on it")
    return TrainingData(manifest=manifest, workdir=temporary, **splits)
