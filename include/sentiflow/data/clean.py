"""clean: raw snapshot → clean snapshot whose manifest points at its parent.

Cleaning is vectorized with Arrow compute kernels (RE2 regexes in C++ over whole columns): no per-row
Python, so its cost is a few passes over whole columns (``benchmarks/clean_throughput.py``).
It runs batch by batch over the raw parts (``iter_batches``) and writes parts as it goes, so its memory
is a few batches plus the deduplication set: 8 bytes per distinct cleaned text (``DigestSet``).
``clean_parts`` runs the same cleaning as Airflow mapped tasks, one per part.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sentiflow.data.collect import snapshot_prefix
from sentiflow.data.hashing import DigestSet, digests
from sentiflow.data.snapshot import Manifest, SnapshotWriter, iter_batches, read_manifest
from sentiflow.data.snapshot_writer import clear_prefix
from sentiflow.names import LABEL_COLUMN, SPLITS, TEXT_COLUMN
from sentiflow.progress import PROGRESS_MARK, format_duration
from sentiflow.settings.components import DataSettings, S3Settings
from sentiflow.storage import ObjectStore

log = logging.getLogger(__name__)

#: What the clean manifest's source says was done.
CLEANING = "lowercase, strip HTML, unescape entities, drop special characters"


class CleanError(ValueError):
    """Cleaning cannot produce a usable snapshot (e.g. a split is empty afterwards)."""


#: Apostrophe entities become apostrophes (contractions like "don't" survive); every other entity becomes a
#: space, since what it encodes (&, <, >, quotes, ...) is a special character we drop anyway.
_APOSTROPHE_ENTITY = r"&(?:#0*39|#x0*27|apos|rsquo|lsquo);"
_TAG = r"<[^>]*>"
_OTHER_ENTITY = r"&#?[a-z0-9]+;"
_APOSTROPHE_VARIANTS = "[\u2018\u2019`\u00b4]"
# Keep letters and digits of any script, whitespace and apostrophes; everything else is "special".
_SPECIAL = r"[^\p{L}\p{N}\s']"
_LONE_APOSTROPHE = r"(^|\s)'+|'+(\s|$)"
# Runs of 2+ whitespace, or any single non-space whitespace: a plain single space needs no rewrite.
_WHITESPACE = r"\s{2,}|[^\S ]"


def clean_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Lowercase, strip HTML tags, unescape entities, drop special characters, collapse whitespace."""
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, _TAG, " ")
    arr = pc.replace_substring_regex(arr, _APOSTROPHE_ENTITY, "'")
    arr = pc.replace_substring_regex(arr, _OTHER_ENTITY, " ")
    arr = pc.replace_substring_regex(arr, _APOSTROPHE_VARIANTS, "'")
    arr = pc.replace_substring_regex(arr, _SPECIAL, " ")
    arr = pc.replace_substring_regex(arr, _LONE_APOSTROPHE, " ")
    arr = pc.replace_substring_regex(arr, _WHITESPACE, " ")
    return pc.utf8_trim_whitespace(arr)


def clean_text(texts: pd.Series | pa.Array | pa.ChunkedArray) -> pd.Series:
    """``clean_array`` for a pandas Series (same index) or an Arrow array; returns a Series."""
    arr = pa.array(texts, type=pa.large_string()) if isinstance(texts, pd.Series) else texts
    arr = clean_array(arr)
    index = texts.index if isinstance(texts, pd.Series) else None
    # to_numpy, not to_pandas: a Series passed with index= would be re-indexed, not relabelled.
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=index, dtype=object)


def clean_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Clean one split; drop rows empty after cleaning and exact duplicate texts. Returns the drop counts."""
    cleaned = frame.assign(**{TEXT_COLUMN: clean_text(frame[TEXT_COLUMN]).to_numpy()})
    empty = cleaned[TEXT_COLUMN].str.len() == 0
    cleaned = cleaned[~empty]
    duplicated = cleaned.duplicated(subset=[TEXT_COLUMN], keep="first")
    cleaned = cleaned[~duplicated].reset_index(drop=True)
    return cleaned, {"empty_after_cleaning": int(empty.sum()), "duplicate_text": int(duplicated.sum())}


def clean_batch(batch: pa.RecordBatch | pa.Table) -> tuple[pa.Table, int]:
    """Clean one batch's texts; drop the rows empty afterwards. Returns the table and how many dropped."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    texts = clean_array(table.column(TEXT_COLUMN))
    table = pa.table({TEXT_COLUMN: texts, LABEL_COLUMN: table.column(LABEL_COLUMN)})
    kept = table.filter(pc.greater(pc.utf8_length(texts), 0))
    return kept, table.num_rows - kept.num_rows


def dedup_digests(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 8-byte digest (uint64) of each cleaned text: what deduplication compares."""
    return digests(texts, size=8)[:, 0]


def clean_split(
    store: ObjectStore,
    raw: Manifest,
    split: str,
    writer: SnapshotWriter,
    settings: DataSettings,
) -> dict[str, int]:
    """Stream one raw split through cleaning and deduplication into ``writer``; the drop counts."""
    seen = DigestSet()
    empty = duplicates = 0
    out = writer.split(split)
    for batch in iter_batches(store, raw, split, batch_rows=settings.batch_rows):
        cleaned, dropped = clean_batch(batch)
        empty += dropped
        keep = seen.first_seen(dedup_digests(cleaned.column(TEXT_COLUMN)))
        duplicates += int(len(keep) - keep.sum())
        out.write(cleaned.filter(pa.array(keep)))
    return {"empty_after_cleaning": empty, "duplicate_text": duplicates}


def raise_if_empty(split: str, rows_before: int, rows_after: int, counts: dict[str, int]) -> None:
    if rows_after == 0:
        raise CleanError(
            f"split {split!r} is empty after cleaning ({rows_before} rows before: "
            f"{counts['empty_after_cleaning']} empty, {counts['duplicate_text']} duplicates)"
        )


def clean_source(raw: Manifest) -> dict[str, object]:
    return {**raw.source, "cleaning": CLEANING}


def clean_snapshot(
    manifest_uri: str,
    *,
    run_id: str | None = None,
    store: ObjectStore | None = None,
    settings: DataSettings | None = None,
) -> str:
    """Clean every split of the raw snapshot at ``manifest_uri`` in one process; the clean manifest URI.

    Rows keep their order; a text's first occurrence in the split is kept, later copies dropped.
    """
    store = store or ObjectStore(S3Settings())
    settings = settings or DataSettings()
    raw: Manifest = read_manifest(store, manifest_uri)
    run_id = run_id or raw.run_id
    prefix = snapshot_prefix(store, run_id, "clean")
    clear_prefix(store, prefix)

    dropped: dict[str, dict[str, int]] = {}
    present = [split for split in SPLITS if split in raw.splits]
    with SnapshotWriter(store, prefix, label_names=raw.label_names, settings=settings, clear=False) as writer:
        for number, split in enumerate(present, start=1):
            started = time.monotonic()
            counts = clean_split(store, raw, split, writer, settings)
            info = writer.split(split).close()
            log.info(
                "%s clean: split %d/%d (%s) %s -> %s rows in %s",
                PROGRESS_MARK,
                number,
                len(present),
                split,
                f"{raw.splits[split].rows:,}",
                f"{info.rows:,}",
                format_duration(time.monotonic() - started),
            )
            raise_if_empty(split, raw.splits[split].rows, info.rows, counts)
            dropped[split] = counts
        return writer.finish(
            kind="clean",
            run_id=run_id,
            source=clean_source(raw),
            parent=manifest_uri,
            dropped=dropped,
        )
