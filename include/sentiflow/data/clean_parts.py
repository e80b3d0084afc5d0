"""clean spread over workers: one task per raw part (Airflow dynamic task mapping), then a manifest.

    plan = clean_plan(raw_uri)                              # one task: [{"split", "part_index"}, ...]
    cleaned = [clean_part(raw_uri, **p) for p in plan]      # mapped: clean + dedup within the part
    repeats = find_repeats(cleaned)                         # one task, digests only: copies across parts
    rewritten = [drop_repeats(**r) for r in repeats]        # mapped, only parts holding such copies
    uri = merge_clean(raw_uri, cleaned, rewritten)          # one task: only writes the manifest

Deduplication across parts is a pass over digests, chosen over partitioning by digest prefix because it
keeps the rows exactly where and in the order the single-process ``clean_snapshot`` puts them (a text's
first occurrence in the split wins). ``clean_part`` writes the cleaned part and the 8-byte digests of its
rows (``part-NNNNN.digests.npy``). ``find_repeats`` reads each split's digest files once, in part order,
into one ``DigestSet`` (memory: 8 bytes per row of the longest split, as the single process; no row of
text is read), and for each part holding texts an earlier part holds writes their row positions
(``part-NNNNN.repeats.npy``). ``drop_repeats`` rewrites just those parts (``part-NNNNN-dedup.parquet``),
spread over workers like the cleaning; when no text repeats across parts it has nothing to do (Airflow
shows it skipped). Every task is idempotent (fixed object names, inputs never overwritten), so Airflow may
retry any of them, and the manifest, written last, is refused while a part it would list is missing.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from sentiflow.data.clean import clean_batch, clean_source, dedup_digests, raise_if_empty
from sentiflow.data.collect import snapshot_prefix
from sentiflow.data.hashing import DigestSet
from sentiflow.data.snapshot import (
    Manifest,
    PartInfo,
    SnapshotError,
    SplitInfo,
    iter_part_batches,
    read_manifest,
)
from sentiflow.data.snapshot_writer import clear_prefix, part_uri, upload_part, write_manifest
from sentiflow.names import MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.progress import PROGRESS_MARK, format_duration
from sentiflow.settings.components import DataSettings, S3Settings
from sentiflow.storage import ObjectStore, S3Uri

log = logging.getLogger(__name__)

_DROPPED = ("empty_after_cleaning", "duplicate_text")


def _prefix(store: ObjectStore, raw: Manifest, run_id: str | None) -> S3Uri:
    return snapshot_prefix(store, run_id or raw.run_id, "clean")


def _digests_uri(prefix: S3Uri, split: str, index: int) -> S3Uri:
    return prefix.join(split, f"part-{index:05d}.digests.npy")


def _repeats_uri(prefix: S3Uri, split: str, index: int) -> S3Uri:
    return prefix.join(split, f"part-{index:05d}.repeats.npy")


def _put_array(store: ObjectStore, uri: S3Uri, values: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, values)
    store.put_bytes(uri, buffer.getvalue())


def _get_array(store: ObjectStore, uri: S3Uri | str, dtype: type) -> np.ndarray:
    return np.asarray(np.load(io.BytesIO(store.get_bytes(uri))), dtype=dtype)


def _key(result: dict[str, Any]) -> tuple[str, int]:
    return result["split"], int(result["part_index"])


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
    started = time.monotonic()
    raw = read_manifest(store, raw_manifest_uri)
    prefix = _prefix(store, raw, run_id)
    store.delete(prefix.join(MANIFEST_FILE))  # a task retried after a merge must not leave it valid
    source = raw.split(split).parts[part_index]
    seen = DigestSet()
    kept_digests: list[np.ndarray] = []
    counts = dict.fromkeys(_DROPPED, 0)

    def cleaned() -> Iterator[pa.Table]:
        for batch in iter_part_batches(store, source, batch_rows=settings.batch_rows):
            table, empty = clean_batch(batch)
            digests = dedup_digests(table.column(TEXT_COLUMN))
            keep = seen.first_seen(digests)
            counts["empty_after_cleaning"] += empty
            counts["duplicate_text"] += int(len(keep) - keep.sum())
            kept_digests.append(digests[keep])
            yield table.filter(pa.array(keep))

    part = upload_part(
        store, part_uri(prefix, split, part_index), cleaned(), raw.label_names, settings.spool_mib
    )
    digests = np.concatenate(kept_digests) if kept_digests else np.zeros(0, np.uint64)
    _put_array(store, _digests_uri(prefix, split, part_index), digests)
    log.info(
        "%s clean: %s part %d: %s -> %s rows in %s",
        PROGRESS_MARK,
        split,
        part_index,
        f"{source.rows:,}",
        f"{part.rows:,}",
        format_duration(time.monotonic() - started),
    )
    return {
        "split": split,
        "part_index": part_index,
        "prefix": str(prefix),
        "part": part.model_dump(),
        "dropped": counts,
    }


def find_repeats(cleaned: list[dict[str, Any]], *, store: ObjectStore | None = None) -> list[dict[str, Any]]:
    """Digests only: the parts whose rows repeat a text of an earlier part of their split.

    Returns one ``drop_repeats`` argument set per such part (``cleaned``: its ``clean_part`` result,
    ``repeats_uri``: the row positions to drop); empty when no text repeats across parts.
    """
    store = store or ObjectStore(S3Settings())
    rewrites: list[dict[str, Any]] = []
    for split in dict.fromkeys(r["split"] for r in cleaned):
        earlier = DigestSet()
        for result in sorted((r for r in cleaned if r["split"] == split), key=_key):
            prefix = S3Uri.parse(result["prefix"])
            index = int(result["part_index"])
            digests = _get_array(store, _digests_uri(prefix, split, index), np.uint64)
            repeated = earlier.contains(digests)
            earlier.add(digests[~repeated])  # distinct within the part already (clean_part)
            if repeated.any():
                uri = _repeats_uri(prefix, split, index)
                _put_array(store, uri, np.flatnonzero(repeated).astype(np.int64))
                rewrites.append({"cleaned": result, "repeats_uri": str(uri)})
        log.info("%s clean: %s: %d distinct texts across its parts", PROGRESS_MARK, split, len(earlier))
    return rewrites


def drop_repeats(
    cleaned: dict[str, Any],
    repeats_uri: str,
    *,
    store: ObjectStore | None = None,
    settings: DataSettings | None = None,
) -> dict[str, Any]:
    """Rewrite one cleaned part without the rows ``find_repeats`` found in earlier parts of its split."""
    store = store or ObjectStore(S3Settings())
    settings = settings or DataSettings()
    prefix = S3Uri.parse(cleaned["prefix"])
    split, index = _key(cleaned)
    part = PartInfo.model_validate(cleaned["part"])
    keep = np.ones(part.rows, dtype=bool)
    repeated = _get_array(store, repeats_uri, np.int64)
    keep[repeated] = False

    def filtered() -> Iterator[pa.Table]:
        start = 0
        for batch in iter_part_batches(store, part, batch_rows=settings.batch_rows):
            mask = keep[start : start + batch.num_rows]
            start += batch.num_rows
            yield pa.Table.from_batches([batch]).filter(pa.array(mask))

    target = part_uri(prefix, split, index, suffix="-dedup")
    rewritten = upload_part(store, target, filtered(), list(part.label_counts), settings.spool_mib)
    dropped = dict(cleaned["dropped"])
    dropped["duplicate_text"] += len(repeated)
    return {**cleaned, "part": rewritten.model_dump(), "dropped": dropped}


def merge_clean(
    raw_manifest_uri: str,
    cleaned: list[dict[str, Any]],
    rewritten: list[dict[str, Any]] | None = None,
    *,
    run_id: str | None = None,
    store: ObjectStore | None = None,
) -> str:
    """Write the clean manifest from the mapped tasks' results (a listing and a JSON write, no data).

    ``rewritten`` (``drop_repeats`` results) replace the ``clean_part`` results of their parts. Refuses,
    writing nothing, unless every raw part has a result and every part it would list is in the store.
    """
    store = store or ObjectStore(S3Settings())
    raw = read_manifest(store, raw_manifest_uri)
    prefix = _prefix(store, raw, run_id)
    final = {_key(r): r for r in cleaned} | {_key(r): r for r in rewritten or []}
    stored = set(store.list_keys(S3Uri(prefix.bucket, prefix.key.rstrip("/") + "/")))
    splits: dict[str, SplitInfo] = {}
    dropped: dict[str, dict[str, int]] = {}
    present = [s for s in SPLITS if s in raw.splits]
    for number, split in enumerate(present, start=1):
        expected = len(raw.splits[split].parts)
        missing = [i for i in range(expected) if (split, i) not in final]
        if missing:
            raise SnapshotError(
                f"split {split!r}: no result for raw part(s) {missing} of {expected}: every mapped task "
                "must succeed before the merge"
            )
        parts = [PartInfo.model_validate(final[split, i]["part"]) for i in range(expected)]
        absent = [p.uri for p in parts if S3Uri.parse(p.uri).key not in stored]
        if absent:
            raise SnapshotError(f"split {split!r}: parts {absent} are not in the store; clean again")
        splits[split] = SplitInfo.from_parts(parts)
        results = [final[split, i] for i in range(expected)]
        dropped[split] = {k: sum(int(r["dropped"][k]) for r in results) for k in _DROPPED}
        raise_if_empty(split, raw.splits[split].rows, splits[split].rows, dropped[split])
        log.info(
            "%s clean: split %d/%d (%s) %s -> %s rows, %d part(s)",
            PROGRESS_MARK,
            number,
            len(present),
            split,
            f"{raw.splits[split].rows:,}",
            f"{splits[split].rows:,}",
            expected,
        )
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
    repeats = find_repeats(cleaned, store=store)
    rewritten = [drop_repeats(**r, store=store, settings=settings) for r in repeats]
    return merge_clean(raw_manifest_uri, cleaned, rewritten, run_id=run_id, store=store)
