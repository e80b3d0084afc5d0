"""Dataset snapshots: reading them as record batches, whatever their size (and the names everyone imports).

The reader API the other steps use:

- ``read_manifest(store, uri) -> Manifest``: the entry point; a snapshot without a manifest is incomplete.
- ``iter_batches(store, manifest, split, batch_rows=..., columns=...) -> Iterator[pa.RecordBatch]``:
  the split's rows in order, one bounded batch at a time. Each part is streamed to a temporary file
  while its sha256 is computed, and checked against the manifest before any of its rows are yielded,
  so memory holds one batch (plus one row group of the parquet reader), never a split.
- ``iter_part_batches(store, part, ...)``: the same for one part (what a mapped task reads).
- ``iter_frames(...)``: the batches as pandas frames, for code that works per batch in pandas.
- ``read_split(...) -> DataFrame`` / ``read_snapshot(...)``: whole splits in memory, for small snapshots
  and callers not yet converted; built on ``iter_batches``.

Writing: ``SnapshotWriter`` (streaming) and ``write_snapshot`` (frames), in ``snapshot_writer``.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sentiflow.data.manifest import (
    SCHEMA_VERSION,
    Manifest,
    PartInfo,
    SnapshotError,
    SplitInfo,
    read_manifest,
)
from sentiflow.data.snapshot_writer import (
    SNAPSHOT_SCHEMA,
    SnapshotWriter,
    label_counts,
    write_manifest,
    write_snapshot,
)
from sentiflow.data.sources import PARQUET_BUFFER_BYTES
from sentiflow.names import SPLITS
from sentiflow.settings.components import DataSettings
from sentiflow.storage import ObjectStore

__all__ = [
    "SCHEMA_VERSION",
    "SNAPSHOT_SCHEMA",
    "Manifest",
    "PartInfo",
    "SnapshotError",
    "SnapshotWriter",
    "SplitInfo",
    "iter_batches",
    "iter_frames",
    "iter_part_batches",
    "label_counts",
    "read_manifest",
    "read_snapshot",
    "read_split",
    "write_manifest",
    "write_snapshot",
]


def iter_part_batches(
    store: ObjectStore,
    part: PartInfo,
    *,
    batch_rows: int | None = None,
    columns: list[str] | None = None,
    verify: bool = True,
) -> Iterator[pa.RecordBatch]:
    """One part's rows as record batches of at most ``batch_rows`` rows, after checking its sha256.

    The object is streamed to a temporary file (parquet needs its footer, at the end) and hashed on the
    way; a part that changed after writing raises SnapshotError before any row is yielded.
    """
    batch_rows = batch_rows or DataSettings().batch_rows
    with tempfile.TemporaryFile() as local:
        digest = hashlib.sha256()
        for chunk in store.iter_chunks(part.uri):
            digest.update(chunk)
            local.write(chunk)
        if verify and digest.hexdigest() != part.sha256:
            raise SnapshotError(
                f"{part.uri} does not match the sha256 in its manifest: it changed after writing"
            )
        local.seek(0)
        # buffered, not pre-buffered: a v1 split is one row group, read in pieces all the same
        parquet = pq.ParquetFile(local, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)


def iter_batches(
    store: ObjectStore,
    manifest: Manifest,
    split: str,
    *,
    batch_rows: int | None = None,
    columns: list[str] | None = None,
    verify: bool = True,
) -> Iterator[pa.RecordBatch]:
    """The rows of ``split`` in order, as record batches; memory is one batch, not the split."""
    for part in manifest.split(split).parts:
        yield from iter_part_batches(store, part, batch_rows=batch_rows, columns=columns, verify=verify)


def iter_frames(
    store: ObjectStore,
    manifest: Manifest,
    split: str,
    *,
    batch_rows: int | None = None,
    columns: list[str] | None = None,
    verify: bool = True,
) -> Iterator[pd.DataFrame]:
    """``iter_batches`` as pandas frames (a fresh 0..n-1 index each)."""
    for batch in iter_batches(store, manifest, split, batch_rows=batch_rows, columns=columns, verify=verify):
        yield batch.to_pandas()


def read_split(store: ObjectStore, manifest: Manifest, split: str, *, verify: bool = True) -> pd.DataFrame:
    """A whole split in memory (small splits only), every part's sha256 checked."""
    batches = list(iter_batches(store, manifest, split, verify=verify))
    schema = batches[0].schema if batches else SNAPSHOT_SCHEMA
    return pa.Table.from_batches(batches, schema=schema).to_pandas()


def read_snapshot(store: ObjectStore, manifest_uri: str) -> tuple[Manifest, dict[str, pd.DataFrame]]:
    """Manifest and every split in memory (small snapshots only)."""
    manifest = read_manifest(store, manifest_uri)
    return manifest, {name: read_split(store, manifest, name) for name in SPLITS if name in manifest.splits}
