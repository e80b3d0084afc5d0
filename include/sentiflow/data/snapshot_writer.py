"""Writing snapshots as streams of record batches: bounded parquet parts, then the manifest, last.

Why this shape: a split of any size is written while it is produced, so no step holds a whole split. Each
part is at most ``part_rows`` rows; it is encoded into a spooled temporary file (memory up to
``spool_mib``, then disk), hashed, and uploaded with boto3's transfer manager (multipart above 8 MiB), so
the memory a writer needs is one row group per open split plus the spool, whatever the split's size.

A snapshot without a manifest is incomplete: a writer first deletes the old manifest (so a crash never
leaves an old manifest pointing at parts that were replaced), then every old object under the prefix,
and writes the manifest only after every part is in place.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Mapping
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sentiflow.data.manifest import (
    Manifest,
    PartInfo,
    SnapshotError,
    SnapshotKind,
    SplitInfo,
    manifest_payload,
    sign_manifest,
    signature_uri,
)
from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.settings.components import DataSettings
from sentiflow.storage import STREAM_CHUNK_BYTES, ObjectStore, S3Uri

#: What every part holds, in this order: the contract between the steps.
SNAPSHOT_SCHEMA = pa.schema([pa.field(TEXT_COLUMN, pa.string()), pa.field(LABEL_COLUMN, pa.int64())])
PARQUET_TYPE = "application/vnd.apache.parquet"
#: A row group is written when it reaches ``batch_rows`` rows or this many bytes, whichever comes first:
#: a split that receives a few rows per batch must not buffer a whole batch's worth of long texts.
ROW_GROUP_BYTES = 16 * 2**20


def part_uri(prefix: S3Uri, split: str, index: int, suffix: str = "") -> S3Uri:
    """``<prefix>/<split>/part-00000<suffix>.parquet``: parts sort in row order by name."""
    return prefix.join(split, f"part-{index:05d}{suffix}.parquet")


def as_snapshot_table(data: pa.Table | pa.RecordBatch | pd.DataFrame) -> pa.Table:
    """Just ``text`` (string) and ``label`` (int64), whatever the input's extra columns or types."""
    if isinstance(data, pd.DataFrame):
        data = pa.Table.from_pandas(data[[TEXT_COLUMN, LABEL_COLUMN]], preserve_index=False)
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    table = table.select([TEXT_COLUMN, LABEL_COLUMN])
    return table.cast(SNAPSHOT_SCHEMA) if table.schema != SNAPSHOT_SCHEMA else table


def count_labels(table: pa.Table, label_names: list[str]) -> np.ndarray:
    """Rows per label id; an id outside the label names is an error (a snapshot must not lie)."""
    ids = table.column(LABEL_COLUMN).to_numpy(zero_copy_only=False)
    if len(ids) and (ids.min() < 0 or ids.max() >= len(label_names)):
        bad = sorted(set(ids[(ids < 0) | (ids >= len(label_names))].tolist()))[:5]
        raise SnapshotError(f"label ids {bad} outside [0, {len(label_names)}) of {label_names}")
    return np.bincount(ids.astype(np.int64), minlength=len(label_names))


class PartWriter:
    """One parquet part being written: row groups go straight into a spooled temporary file (memory up
    to ``spool_mib``, then disk); ``close`` hashes the file and uploads it (multipart when large)."""

    def __init__(self, store: ObjectStore, uri: S3Uri, label_names: list[str], spool_mib: int) -> None:
        self.store, self.uri, self.label_names = store, uri, label_names
        self.rows = 0
        self.counts = np.zeros(len(label_names), dtype=np.int64)
        self._spool = tempfile.SpooledTemporaryFile(max_size=spool_mib * 2**20)  # noqa: SIM115 (closed in close/abort)
        self._writer = pq.ParquetWriter(self._spool, SNAPSHOT_SCHEMA, compression="zstd")

    def write(self, data: pa.Table | pa.RecordBatch | pd.DataFrame) -> None:
        """Append one row group (encoded and compressed now: nothing of it stays in memory)."""
        table = as_snapshot_table(data)
        self.counts += count_labels(table, self.label_names)
        self.rows += table.num_rows
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def close(self) -> PartInfo:
        try:
            self._writer.close()
            sha256 = _rewind_and_hash(self._spool)
            self.store.upload_fileobj(self.uri, self._spool, PARQUET_TYPE)
        finally:
            self._spool.close()
        return PartInfo(
            uri=str(self.uri),
            rows=self.rows,
            sha256=sha256,
            label_counts={name: int(self.counts[i]) for i, name in enumerate(self.label_names)},
        )

    def abort(self) -> None:
        """Drop the part without uploading it."""
        try:
            self._writer.close()
        finally:
            self._spool.close()


def upload_part(
    store: ObjectStore, uri: S3Uri, tables: Iterable[pa.Table], label_names: list[str], spool_mib: int
) -> PartInfo:
    """Write ``tables`` (one row group each, consumed one at a time) as one part; its manifest entry."""
    part = PartWriter(store, uri, label_names, spool_mib)
    try:
        for table in tables:
            part.write(table)
    except BaseException:
        part.abort()
        raise
    return part.close()


def _rewind_and_hash(handle: IO[bytes]) -> str:
    handle.seek(0)
    digest = hashlib.sha256()
    while chunk := handle.read(STREAM_CHUNK_BYTES):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


class SplitWriter:
    """One split being written: rows buffered up to a row group, parts rolled every ``part_rows`` rows.

    Memory: one row group (``batch_rows`` rows) plus the part's spool, whatever the split's length.
    """

    def __init__(
        self, store: ObjectStore, prefix: S3Uri, split: str, label_names: list[str], settings: DataSettings
    ) -> None:
        self.store, self.prefix, self.split = store, prefix, split
        self.label_names = label_names
        self.part_rows = settings.part_rows
        self.row_group_rows = min(settings.batch_rows, settings.part_rows)
        self.spool_mib = settings.spool_mib
        self.parts: list[PartInfo] = []
        self._part: PartWriter | None = None  # the part being written
        self._buffer: list[pa.Table] = []  # rows of the current row group
        self._buffered = 0
        self._buffered_bytes = 0
        self._part_filled = 0

    def write(self, data: pa.Table | pa.RecordBatch | pd.DataFrame) -> None:
        table = as_snapshot_table(data)
        while table.num_rows:
            room = min(self.part_rows - self._part_filled, self.row_group_rows - self._buffered)
            head, table = table.slice(0, room), table.slice(room)
            self._buffer.append(head)
            self._buffered += head.num_rows
            self._buffered_bytes += head.nbytes
            self._part_filled += head.num_rows
            full = self._buffered >= self.row_group_rows or self._buffered_bytes >= ROW_GROUP_BYTES
            if full or self._part_filled >= self.part_rows:
                self._flush_row_group()
            if self._part_filled >= self.part_rows:
                self._upload()

    def _flush_row_group(self) -> None:
        if self._buffer:
            if self._part is None:
                uri = part_uri(self.prefix, self.split, len(self.parts))
                self._part = PartWriter(self.store, uri, self.label_names, self.spool_mib)
            self._part.write(pa.concat_tables(self._buffer).combine_chunks())
        self._buffer, self._buffered, self._buffered_bytes = [], 0, 0

    def _upload(self) -> None:
        if self._part is None:  # an empty split is one empty part: readers need a schema
            uri = part_uri(self.prefix, self.split, len(self.parts))
            self._part = PartWriter(self.store, uri, self.label_names, self.spool_mib)
        part, self._part = self._part, None
        self.parts.append(part.close())
        self._part_filled = 0
        pa.default_memory_pool().release_unused()  # hand freed pages back: RSS follows what is in use

    def close(self) -> SplitInfo:
        self._flush_row_group()
        if self._part is not None or not self.parts:
            self._upload()
        return SplitInfo.from_parts(self.parts)

    def abort(self) -> None:
        self._buffer = []
        if self._part is not None:
            self._part.abort()
            self._part = None


class SnapshotWriter:
    """Writes a snapshot under ``prefix``: splits as parts while they are produced, the manifest last.

    Use as a context manager; an exception inside leaves no manifest (the old one was deleted first)::

        with SnapshotWriter(store, prefix, label_names=names) as writer:
            for batch in batches:
                writer.write("train", batch)
            uri = writer.finish(kind="raw", run_id=run_id, source={...})
    """

    def __init__(
        self,
        store: ObjectStore,
        prefix: S3Uri | str,
        *,
        label_names: list[str],
        settings: DataSettings | None = None,
        clear: bool = True,
    ) -> None:
        self.store = store
        self.prefix = S3Uri.parse(str(prefix))
        self.label_names = list(label_names)
        self.settings = settings or DataSettings()
        self.manifest_uri = self.prefix.join(MANIFEST_FILE)
        self.writers: dict[str, SplitWriter] = {}
        if clear:
            clear_prefix(store, self.prefix)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for writer in self.writers.values():  # buffered rows are dropped; uploaded parts stay unreferenced
            writer.abort()
        self.writers.clear()

    def split(self, name: str) -> SplitWriter:
        if name not in self.writers:
            self.writers[name] = SplitWriter(self.store, self.prefix, name, self.label_names, self.settings)
        return self.writers[name]

    def write(self, split: str, data: pa.Table | pa.RecordBatch | pd.DataFrame) -> None:
        self.split(split).write(data)

    def close_splits(self) -> dict[str, SplitInfo]:
        """Upload what is buffered; the splits in canonical order (train, validation, test, others)."""
        order = [s for s in SPLITS if s in self.writers] + [s for s in self.writers if s not in SPLITS]
        return {name: self.writers[name].close() for name in order}

    def finish(self, *, splits: dict[str, SplitInfo] | None = None, **manifest_fields: Any) -> str:
        """Close every split and write the manifest (``kind``, ``run_id``, ``source``, ...); its URI."""
        splits = splits if splits is not None else self.close_splits()
        manifest = Manifest(label_names=self.label_names, splits=splits, **manifest_fields)
        return write_manifest(self.store, self.prefix, manifest)


def clear_prefix(store: ObjectStore, prefix: S3Uri) -> None:
    """Old manifest first (nothing may point at parts about to go), then every old object."""
    store.delete(prefix.join(MANIFEST_FILE))
    store.delete_prefix(S3Uri(prefix.bucket, prefix.key.rstrip("/") + "/"))


def write_manifest(store: ObjectStore, prefix: S3Uri | str, manifest: Manifest) -> str:
    """The last write of a snapshot: after it, the snapshot is complete. Returns the manifest URI."""
    uri = str(S3Uri.parse(str(prefix)).join(MANIFEST_FILE))
    payload = manifest_payload(manifest)
    signature = sign_manifest(payload)
    if signature is not None:  # first: a manifest is never there without its signature
        store.put_bytes(signature_uri(uri), signature.encode(), "text/plain")
    store.put_bytes(uri, payload, "application/json")
    return uri


def label_counts(frame: pd.DataFrame, label_names: list[str]) -> dict[str, int]:
    counts = frame[LABEL_COLUMN].value_counts()
    return {name: int(counts.get(i, 0)) for i, name in enumerate(label_names)}


def write_snapshot(
    store: ObjectStore,
    prefix: S3Uri | str,
    frames: Mapping[str, pd.DataFrame],
    *,
    kind: SnapshotKind,
    run_id: str,
    source: dict[str, Any],
    label_names: list[str],
    parent: str | None = None,
    dropped: dict[str, dict[str, int]] | None = None,
    notes: dict[str, Any] | None = None,
    settings: DataSettings | None = None,
) -> str:
    """Write in-memory ``frames`` (small snapshots: feedback, tests) as a snapshot; the manifest URI.

    The same parts and manifest as the streaming writer, which it uses; big data should call
    ``SnapshotWriter`` with batches instead of building frames.
    """
    with SnapshotWriter(store, prefix, label_names=label_names, settings=settings) as writer:
        for name, frame in frames.items():
            writer.split(name)
            for start in range(0, len(frame), writer.settings.batch_rows):
                writer.write(name, frame.iloc[start : start + writer.settings.batch_rows])
        return writer.finish(
            kind=kind,
            run_id=run_id,
            source=source,
            parent=parent,
            dropped=dropped or {},
            notes=notes or {},
        )
