"""clean spread over workers: one task per raw part (Airflow dynamic task mapping), then a manifest.

    plan = clean_plan(raw_uri)                                  # one task: [{"split", "part_index"}, ...]
    cleaned = [clean_part(raw_uri, **p) for p in plan]          # mapped: clean + dedup within the part
    final = [dedup_part(c) for c in cleaned]                    # mapped: dedup against earlier parts
    uri = merge_clean(raw_uri, final)                           # one task: only writes the manifest

Deduplication across parts is a second pass, chosen over partitioning by digest prefix because it keeps
the rows exactly where and in the order the single-process ``clean_snapshot`` puts them (a text's first
occurrence in the split wins): ``clean_part`` writes the cleaned part and the 8-byte digests of its rows
(``part-NNNNN.digests.npy``, 8 bytes a row); ``dedup_part`` for part i reads the digests of parts 0..i-1
(memory: 8 bytes per row before it, at most 8 bytes per row of the split — 40 MiB for 5 million rows)
and drops its rows seen there, rewriting the part only when it has such rows. Every task is
idempotent (fixed object names, inputs never overwritten), so Airflow may retry any of them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from sentiflow.config import DataSettings, S3Settings
from sentiflow.data.clean import (
    clean_batch,
    clean_source,
    dedup_digests,
    raise_if_empty,
)
from sentiflow.data.collect import snapshot_prefix
from sentiflow.data.hashing import DigestSet
from sentiflow.data.snapshot import Manifest, PartInfo, SplitInfo, iter_part_batches, read_manifest
from sentiflow.data.snapshot_writer import clear_prefix, part_uri, upload_part, write_manifest
from sentiflow.names import MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.storage import ObjectStore, S3Uri


def _prefix(store: ObjectStore, raw: Manifest, run_id: str | None) -> S3Uri:
    return snapshot_prefix(store, run_id or raw.run_id, "clean")


def _digests_uri(prefix: S3Uri, split: str, index: int) -> S3Uri:
    return prefix.join(split, f"part-{index:05d}.digests.npy")


def clean_plan(
    raw_manifest_uri: str, *, run_id: str | None = None, store: ObjectStore | None = None
) -> list[dict[str, Any]]:
    """The mapped tasks' arguments, one per raw part; clears the clean prefix (old manifest first)."""
    store = store or ObjectStore(S3Settings())
    raw = read_manifest(store, raw_manifest_uri)
    clear_prefix(store, _prefix(store, raw, run_id))
    return [
        {"split": split, "part_index": index}
        for split in SPLITS
        if split in raw.splits
        for index in range(len(raw.splits[split].parts))
    ]


def clean_part(
    raw_manifest_uri: str,
    split: str,
    part_index: int,
    *,
    run_id: str | None = None,
    store: ObjectStore | None = None,
    settings: DataSettings | None = None,
) -> dict[str, Any]:
    """Clean one raw part and drop duplicates within it; write the part and its digests.

    Returns (for XCom, JSON) ``split``, ``part_index``, ``prefix``, ``part`` (the PartInfo), ``dropped``.
    """
    store = store or ObjectStore(S3Settings())
    settings = settings or DataSettings()
    raw = read_manifest(store, raw_manifest_uri)
    prefix = _prefix(store, raw, run_id)
    store.delete(prefix.join(MANIFEST_FILE))  # a task retried after a merge must not leave it valid
    source = raw.split(split).parts[part_index]
    seen = DigestSet()
    kept_digests: list[np.ndarray] = []
    counts = {"empty_after_cleaning": 0, "duplicate_text": 0}

    def cleaned() -> Iterator[pa.Table]:
        for batch in iter_part_batches(store, source, batch_rows=settings.batch_rows):
            table, empty = clean_batch(batch)
            digests = dedup_digests(table.column(TEXT_COLUMN))
            keep = seen.first_seen(digests)
            counts["empty_after_cleaning"] += empty
            counts["duplicate_text"] += int(len(keep) - keep.sum())
            kept_digests.append(digests[keep])
            yield table.filter(pa.array(keep))

    target = part_uri(prefix, split, part_index)
    part = upload_part(store, target, cleaned(), raw.label_names, settings.spool_mib)
    buffer = io.BytesIO()
    np.save(buffer, np.concatenate(kept_digests) if kept_digests else np.zeros(0, np.uint64))
    store.put_bytes(_digests_uri(prefix, split, part_index), buffer.getvalue())
    return {
        "split": split,
        "part_index": part_index,
        "prefix": str(prefix),
        "part": part.model_dump(),
        "dropped": counts,
    }


def _load_digests(store: ObjectStore, uri: S3Uri) -> np.ndarray:
    return np.asarray(np.load(io.BytesIO(store.get_bytes(uri))), dtype=np.uint64)


def dedup_part(
    cleaned: dict[str, Any], *, store: ObjectStore | None = None, settings: DataSettings | None = None
) -> dict[str, Any]:
    """Drop the rows of one cleaned part whose text an earlier part of its split already holds."""
    store = store or ObjectStore(S3Settings())
    settings = settings or DataSettings()
    prefix = S3Uri.parse(cleaned["prefix"])
    split, index = cleaned["split"], int(cleaned["part_index"])
    earlier = DigestSet()
    for j in range(index):
        earlier.add(_load_digests(store, _digests_uri(prefix, split, j)))
    repeated = earlier.contains(_load_digests(store, _digests_uri(prefix, split, index)))
    if not repeated.any():
        return cleaned
    part = PartInfo.model_validate(cleaned["part"])
    label_names = list(part.label_counts)
    keep = ~repeated

    def filtered() -> Iterator[pa.Table]:
        start = 0
        for batch in iter_part_batches(store, part, batch_rows=settings.batch_rows):
            mask = keep[start : start + batch.num_rows]
            start += batch.num_rows
            yield pa.Table.from_batches([batch]).filter(pa.array(mask))

    target = part_uri(prefix, split, index, suffix="-dedup")
    rewritten = upload_part(store, target, filtered(), label_names, settings.spool_mib)
    dropped = dict(cleaned["dropped"])
    dropped["duplicate_text"] += int(repeated.sum())
    return {**cleaned, "part": rewritten.model_dump(), "dropped": dropped}


def merge_clean(
    raw_manifest_uri: str,
    parts: list[dict[str, Any]],
    *,
    run_id: str | None = None,
    store: ObjectStore | None = None,
) -> str:
    """Write the clean manifest from the mapped tasks' results (no data is read or written here)."""
    store = store or ObjectStore(S3Settings())
    raw = read_manifest(store, raw_manifest_uri)
    prefix = _prefix(store, raw, run_id)
    splits: dict[str, SplitInfo] = {}
    dropped: dict[str, dict[str, int]] = {}
    for split in [s for s in SPLITS if s in raw.splits]:
        mine = sorted((p for p in parts if p["split"] == split), key=lambda p: int(p["part_index"]))
        expected = len(raw.splits[split].parts)
        if [int(p["part_index"]) for p in mine] != list(range(expected)):
            raise ValueError(
                f"split {split!r}: {expected} raw parts but results for parts "
                f"{[p['part_index'] for p in mine]}: every mapped task must succeed before the merge"
            )
        splits[split] = SplitInfo.from_parts([PartInfo.model_validate(p["part"]) for p in mine])
        dropped[split] = {
            key: sum(int(p["dropped"][key]) for p in mine)
            for key in ("empty_after_cleaning", "duplicate_text")
        }
        raise_if_empty(split, raw.splits[split].rows, splits[split].rows, dropped[split])
    manifest = Manifest(
        kind="clean",
        run_id=run_id or raw.run_id,
        source=clean_source(raw),
        label_names=raw.label_names,
        splits=splits,
        parent=raw_manifest_uri,
        dropped=dropped,
        notes={"cleaned_by": "mapped tasks, one per raw part"},
    )
    return write_manifest(store, prefix, manifest)


def clean_snapshot_mapped(
    raw_manifest_uri: str,
    *,
    run_id: str | None = None,
    store: ObjectStore | None = None,
    settings: DataSettings | None = None,
) -> str:
    """The mapped flow run in one process, in order (what the DAG does across workers)."""
    store = store or ObjectStore(S3Settings())
    plan = clean_plan(raw_manifest_uri, run_id=run_id, store=store)
    cleaned = [
        clean_part(raw_manifest_uri, **task, run_id=run_id, store=store, settings=settings) for task in plan
    ]
    final = [dedup_part(result, store=store, settings=settings) for result in cleaned]
    return merge_clean(raw_manifest_uri, final, run_id=run_id, store=store)
