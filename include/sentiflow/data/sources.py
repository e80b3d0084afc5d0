"""Sources of a dataset → per split, a re-readable stream of Arrow tables (never a whole file in memory).

Layouts seen in the wild: ``train.csv``/``test.csv``; the Hub's ``data/train-00000-of-00001.parquet``
shards (any depth, several shards per split); folders named by split (``train/part-0.jsonl``); parquet,
CSV, TSV and JSON Lines, local or ``s3://``. Shards of one split are read in name order. Parquet is read
by record batches, CSV/TSV and JSON Lines by blocks (pyarrow's streaming readers); an ``s3://`` file is
first streamed to a temporary file (parquet needs random access), one file at a time. A ``.json`` file
that is not JSON Lines (one JSON array) cannot be streamed and is read whole.

A Hub dataset is loaded with ``datasets`` into its Arrow cache files (memory-mapped, on disk) and read
in Arrow batches of them, not with ``streaming=True``: the files are written once, a batch costs no Python
object per row, row counts are exact, and collect reads them twice (the label column first, then the rows)
without downloading again. Their pages belong to the page cache, not to the process' heap.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from sentiflow.storage import ObjectStore, S3Uri, is_s3_uri

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".jsonl", ".ndjson", ".json")
#: ``train``, ``train-00000-of-00003``, ``train_part1``, ``validation.0``: a split name, then a separator.
_SPLIT_NAME = re.compile(r"^(?P<split>[a-z]+)(?:[-_.].*)?$")
#: Parquet column chunks are read through a buffer of this size (pre_buffer off), not whole: a file with
#: one huge row group (``pandas.to_parquet`` of a big frame) would otherwise be read into memory at once.
PARQUET_BUFFER_BYTES = 8 * 2**20
#: Bytes per block of the CSV and JSON readers: a batch of rows of a text file.
TEXT_BLOCK_BYTES = 16 * 2**20


class CollectError(ValueError):
    """The source cannot become a labelled text snapshot; the message says why and what was seen."""


#: ``read(columns, string_columns, batch_rows)`` → tables of the split's rows, in order, each time anew.
BatchReader = Callable[[list[str] | None, list[str], int], Generator[pa.Table, None, None]]


@dataclass(frozen=True)
class SourceSplit:
    """One split of a source: its name, and how to stream its rows (as often as needed)."""

    name: str
    read: BatchReader


def split_of(path: str) -> str | None:
    """The canonical split of a file: from its name (``train-00000-of-00001.parquet``), else its folder."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    for part in (parts[-1], *reversed(parts[:-1])) if parts else ():
        match = _SPLIT_NAME.match(part.lower())
        if match and match.group("split") in SPLIT_ALIASES:
            return SPLIT_ALIASES[match.group("split")]
    return None


def _locations(store: ObjectStore, source: str) -> dict[str, str]:
    """Relative path under the source → readable location, for every data file at any depth."""
    if is_s3_uri(source):
        prefix = S3Uri.parse(source.rstrip("/") + "/")
        return {
            key[len(prefix.key) :]: str(S3Uri(prefix.bucket, key))
            for key in store.list_keys(prefix)
            if key.lower().endswith(FILE_SUFFIXES)
        }
    folder = Path(source).expanduser()
    return {
        p.relative_to(folder).as_posix(): str(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.name.lower().endswith(FILE_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


@contextmanager
def local_copy(store: ObjectStore, location: str) -> Iterator[Path]:
    """A local path for ``location``: the file itself, or an ``s3://`` object streamed to a temp file."""
    if not is_s3_uri(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {location}")
        yield path
        return
    suffix = PurePosixPath(S3Uri.parse(location).key).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        for chunk in store.iter_chunks(location):
            handle.write(chunk)
        handle.flush()
        yield Path(handle.name)


def _check_columns(name: str, present: list[str], wanted: list[str] | None) -> None:
    missing = [c for c in wanted or [] if c not in present]
    if missing:
        raise CollectError(f"{name}: no column {missing[0]!r}; columns seen: {present}")


def _csv_batches(
    path: Path, name: str, columns: list[str] | None, string_columns: list[str], delimiter: str
) -> Iterator[pa.Table]:
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace").rstrip("\r\n")
    present = next(csv.reader([header], delimiter=delimiter), [])
    _check_columns(name, present, columns)
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=TEXT_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in string_columns}
        ),
    )
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _json_batches(path: Path, name: str, columns: list[str] | None) -> Iterator[pa.Table]:
    try:
        reader = pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=TEXT_BLOCK_BYTES))
        batches: Iterator[pa.RecordBatch] = iter(reader)
        first = next(batches, None)
    except pa.ArrowInvalid:
        if not name.lower().endswith(".json"):
            raise
        table = pa.Table.from_pandas(pd.read_json(path), preserve_index=False)  # one JSON array: whole
        _check_columns(name, table.column_names, columns)
        yield table.select(columns) if columns else table
        return
    for batch in [first, *batches] if first is not None else []:
        _check_columns(name, batch.schema.names, columns)
        table = pa.Table.from_batches([batch])
        yield table.select(columns) if columns else table


def file_batches(
    store: ObjectStore,
    location: str,
    name: str,
    columns: list[str] | None = None,
    string_columns: list[str] | None = None,
    batch_rows: int = 50_000,
) -> Iterator[pa.Table]:
    """The rows of one data file as tables (``columns`` only; ``string_columns`` read as text)."""
    lower = name.lower()
    if not lower.endswith(FILE_SUFFIXES):
        raise CollectError(f"{name}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    with local_copy(store, location) as path:
        try:
            if lower.endswith((".parquet", ".pq")):
                parquet = pq.ParquetFile(path, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
                _check_columns(name, parquet.schema_arrow.names, columns)
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
            elif lower.endswith((".csv", ".tsv")):
                delimiter = "\t" if lower.endswith(".tsv") else ","
                yield from _csv_batches(path, name, columns, string_columns or [], delimiter)
            else:
                yield from _json_batches(path, name, columns)
        except (CollectError, FileNotFoundError):
            raise
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise CollectError(f"{name}: not a readable {Path(lower).suffix} file: {exc}") from exc


def _split_reader(store: ObjectStore, files: list[tuple[str, str]]) -> BatchReader:
    def read(
        columns: list[str] | None, string_columns: list[str], batch_rows: int
    ) -> Generator[pa.Table, None, None]:
        for name, location in files:
            yield from file_batches(store, location, name, columns, string_columns, batch_rows)

    return read


def file_splits(store: ObjectStore, source: str) -> dict[str, SourceSplit]:
    """A single file becomes ``train``; a folder/prefix maps its files to splits by name or folder."""
    if source.lower().endswith(FILE_SUFFIXES):
        return {"train": SourceSplit("train", _split_reader(store, [(source, source)]))}
    locations = _locations(store, source)
    files: dict[str, list[tuple[str, str]]] = {}
    for relative in sorted(locations):
        split = split_of(relative)
        if split is not None:
            files.setdefault(split, []).append((relative, locations[relative]))
    if not files:
        raise CollectError(
            f"{source}: no train/validation/test data files found there ({', '.join(FILE_SUFFIXES)}; "
            f"files seen: {sorted(locations)[:20] or 'none'})"
        )
    if "train" not in files:
        raise CollectError(f"{source}: has {sorted(files)} but no train split")
    return {split: SourceSplit(split, _split_reader(store, found)) for split, found in files.items()}


def _hub_reader(split: Any) -> BatchReader:
    def read(
        columns: list[str] | None, string_columns: list[str], batch_rows: int
    ) -> Generator[pa.Table, None, None]:
        selected = split.select_columns(columns) if columns else split
        yield from selected.with_format("arrow").iter(batch_size=batch_rows)

    return read


def hub_splits(name: str, dataset_config: str | None) -> tuple[dict[str, SourceSplit], dict[str, list[str]]]:
    """The dataset's train/validation/test splits, and ClassLabel names per column."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a declared dependency
        raise CollectError("Hugging Face `datasets` is not installed") from exc
    try:
        dataset_dict = datasets.load_dataset(name, dataset_config)
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
        splits[canonical] = SourceSplit(canonical, _hub_reader(split))
        for column, feature in split.features.items():
            if isinstance(feature, datasets.ClassLabel):
                class_names[column] = list(feature.names)
    if "train" not in splits:
        raise CollectError(f"dataset {name!r} has splits {list(dataset_dict)} but none is a train split")
    return splits, class_names
