"""collect: any labelled text dataset → a raw snapshot (train/validation/test parquet parts + manifest) in S3.

Sources: a Hugging Face dataset name (optionally with a config), or a local/``s3://`` parquet, CSV, TSV or
JSON Lines file, or a folder/prefix holding ``train``/``validation``/``test`` files. Everything is read
as a stream of Arrow batches, in passes, so a source of any size needs the memory of a few batches:

1. the label column alone: row counts per split and the distinct label values, from which one label
   mapping for every split is built (labels.py);
2. small sources only (``DataSettings.exact_rows``): the hashes of every row, for exact stratified
   split and sample sizes (sampling.py);
3. the rows: labels encoded, rows without text or label dropped (and counted), each row sent to a split
   and kept or not by a keyed hash of its text (hashing.py, sampling.py), written as parquet parts.

``sample_size`` is the size of the train split and ``eval_sample_size`` that of validation and of test:
exact and stratified for sources up to ``exact_rows`` rows; above, the *expected* size (each row kept
with probability size / expected rows of its split: within a few √size of it, class proportions the
source's). Unset keeps everything. Carving and sampling depend only on the text, its label and the seed,
never on the row's position, so the result is the same however the source is cut into files.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sentiflow.data.hashing import text_hashes
from sentiflow.data.labels import check_class_counts, encode_arrow, encode_labels, label_encoding
from sentiflow.data.sampling import exact_plan, fraction_plan
from sentiflow.data.snapshot_writer import SnapshotWriter, clear_prefix
from sentiflow.data.sources import FILE_SUFFIXES, CollectError, SourceSplit, file_splits, hub_splits
from sentiflow.names import DEFAULT_SEED, LABEL_COLUMN, SPLITS, TEXT_COLUMN
from sentiflow.progress import PROGRESS_MARK, format_duration
from sentiflow.settings.components import DataSettings, S3Settings
from sentiflow.storage import ObjectStore, S3Uri, is_s3_uri

__all__ = ["CollectError", "collect", "encode_labels", "open_source", "sanitize_run_id", "snapshot_prefix"]

log = logging.getLogger(__name__)


TEXT_CANDIDATES = ("text", "review", "sentence", "content", "document", "tweet", "body", "comment")
LABEL_CANDIDATES = ("label", "labels", "sentiment", "target", "class", "polarity", "rating_label")
#: Rows of train read to detect the text and label columns.
SAMPLE_ROWS = 1_000


# --- reading sources ------------------------------------------------------------------------------
def open_source(
    source: str, *, dataset_config: str | None = None, store: ObjectStore | None = None
) -> tuple[dict[str, SourceSplit], dict[str, list[str]]]:
    """Streams per canonical split name, and label names known from the source's schema (Hub ClassLabel)."""
    store = store or ObjectStore()
    if is_s3_uri(source) or Path(source).expanduser().exists():
        return file_splits(store, source), {}
    looks_like_path = source.startswith((".", "/", "~")) or source.lower().endswith(FILE_SUFFIXES)
    if looks_like_path:
        raise CollectError(f"dataset {source!r} not found: no such file or folder")
    return hub_splits(source, dataset_config)


def _sample_frame(split: SourceSplit) -> pd.DataFrame:
    batches = split.read(None, [], SAMPLE_ROWS)
    try:
        first = next(batches, None)
    finally:
        batches.close()  # release the generator's temporary file now
    return first.slice(0, SAMPLE_ROWS).to_pandas() if first is not None else pd.DataFrame()


# --- detecting columns and labels ---------------------------------------------------------------------
def detect_text_column(frame: pd.DataFrame, hint: str | None = None) -> str:
    columns = list(frame.columns)
    if hint:
        if hint not in columns:
            raise CollectError(f"text column {hint!r} not found; columns seen: {columns}")
        return hint
    lowered = {str(c).lower(): c for c in columns}
    for candidate in TEXT_CANDIDATES:
        if candidate in lowered:
            return lowered[candidate]
    string_columns = [
        c for c in columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    if string_columns:
        lengths = {c: frame[c].astype(str).str.len().mean() for c in string_columns}
        best = max(lengths, key=lambda column: lengths[column])
        if lengths[best] >= 20:
            return best
    raise CollectError(
        f"no text column found; columns seen: {columns}. Name it with text_column=… (looked for "
        f"{', '.join(TEXT_CANDIDATES)}, or a string column with long values)"
    )


def detect_label_column(frame: pd.DataFrame, text_column: str, hint: str | None = None) -> str:
    columns = list(frame.columns)
    if hint:
        if hint not in columns:
            raise CollectError(f"label column {hint!r} not found; columns seen: {columns}")
        return hint
    lowered = {str(c).lower(): c for c in columns if c != text_column}
    for candidate in LABEL_CANDIDATES:
        if candidate in lowered:
            return lowered[candidate]
    raise CollectError(
        f"no label column found; columns seen: {columns}. Name it with label_column=… "
        f"(looked for {', '.join(LABEL_CANDIDATES)})"
    )


# --- splitting and sampling -----------------------------------------------------------------------------
def _scan_labels(
    splits: Mapping[str, SourceSplit], label_col: str, batch_rows: int
) -> tuple[dict[str, int], dict[str, list[Any]]]:
    """First pass, label column only: rows per split and the distinct label values of each."""
    rows: dict[str, int] = {}
    distinct: dict[str, list[Any]] = {}
    for name, split in splits.items():
        count, values = 0, set()
        for table in split.read([label_col], [], batch_rows):
            count += table.num_rows
            values.update(pc.unique(table.column(label_col)).to_pylist())
        rows[name] = count
        distinct[name] = [v for v in values if v is not None]
    return rows, distinct


def _hash_rows(
    splits: Mapping[str, SourceSplit],
    text_col: str,
    label_col: str,
    mapping: Mapping[Any, int],
    seed: int,
    batch_rows: int,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The exact plan's pass (small sources only): split hash, sample hash and label id of every row."""
    out = {}
    for name, split in splits.items():
        parts = []
        for batch in split.read([text_col, label_col], [text_col], batch_rows):
            table, _ = _encode_batch(batch, text_col, label_col, mapping)
            hashes = text_hashes(table.column(TEXT_COLUMN), seed)
            labels = table.column(LABEL_COLUMN).to_numpy().astype(np.int64)
            parts.append((hashes.split_hash, hashes.sample_hash, labels))
        columns = [
            np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.uint64) for i in range(3)
        ]
        out[name] = (columns[0], columns[1], columns[2].astype(np.int64))
    return out


def sanitize_run_id(run_id: str) -> str:
    """Airflow run ids contain ``:`` and ``+``; keep S3 keys plain and predictable."""
    cleaned = re.sub(r"[^A-Za-z0-9._=-]+", "_", run_id).strip("_")
    if not cleaned:
        raise CollectError(f"run id {run_id!r} has no usable characters")
    return cleaned


def snapshot_prefix(store: ObjectStore, run_id: str, kind: str) -> S3Uri:
    """``s3://<bucket>/<datasets_prefix>/<run_id>/<kind>/`` — one folder per run, never shared."""
    return store.uri(store.settings.datasets_prefix, sanitize_run_id(run_id), kind)


def collect(
    source: str,
    *,
    run_id: str,
    dataset_config: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | Mapping[str, str] | None = None,
    sample_size: int | None = None,
    eval_sample_size: int | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = DEFAULT_SEED,
    store: ObjectStore | None = None,
    settings: DataSettings | None = None,
) -> str:
    """Collect ``source`` into a raw snapshot for ``run_id``; return its manifest URI.

    ``sample_size`` caps the train split and ``eval_sample_size`` each of validation and test: exactly
    (stratified) for sources up to ``settings.exact_rows`` rows, in expectation above (see the module's
    docstring); unset keeps everything.
    """
    store = store or ObjectStore(S3Settings())
    settings = settings or DataSettings()
    prefix = snapshot_prefix(store, run_id, "raw")
    # A re-run replaces the snapshot: drop the old manifest first, so a failure below leaves none behind.
    clear_prefix(store, prefix)
    started = time.monotonic()
    log.info("%s collect: reading %s", PROGRESS_MARK, source)
    splits, schema_names = open_source(source, dataset_config=dataset_config, store=store)

    first = _sample_frame(splits["train"])
    text_col = detect_text_column(first, text_column)
    label_col = detect_label_column(first, text_col, label_column)
    known = label_names or schema_names.get(label_col)

    rows, distinct = _scan_labels(splits, label_col, settings.batch_rows)
    # one mapping for all splits: a split cannot shift another's ids (``-1,0,1`` → 0,1,2 everywhere)
    mapping, names = label_encoding([pd.Series(v) for v in distinct.values()], label_col, known)
    present = sorted(
        {int(i) for i in encode_arrow(pa.array(distinct["train"]), mapping).drop_null().to_pylist()}
    )
    if len(present) < 2:
        only = names[present[0]] if present else "none"
        raise CollectError(
            f"label column {label_col!r} has a single class ({only!r}) in the train split; a classifier "
            "needs at least two"
        )
    options: dict[str, Any] = {
        "sample_size": sample_size,
        "eval_sample_size": eval_sample_size,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    if sum(rows.values()) <= settings.exact_rows:
        hashed = _hash_rows(splits, text_col, label_col, mapping, seed, settings.batch_rows)
        plan = exact_plan(hashed, len(names), **options)
    else:
        plan = fraction_plan(rows, len(names), **options)
    log.info(
        "%s collect: %s in the source; expecting %s (%s sampling)",
        PROGRESS_MARK,
        ", ".join(f"{split} {n:,} rows" for split, n in rows.items()),
        ", ".join(f"{split} {n:,.0f}" for split, n in plan.expected_rows.items()),
        plan.mode,
    )
    dropped: dict[str, dict[str, int]] = {}
    with SnapshotWriter(store, prefix, label_names=names, settings=settings, clear=False) as writer:
        for output in SPLITS:
            writer.split(output)
        for name, source_split in splits.items():
            missing = 0
            for batch in source_split.read([text_col, label_col], [text_col], settings.batch_rows):
                table, lost = _encode_batch(batch, text_col, label_col, mapping)
                missing += lost
                hashes = text_hashes(table.column(TEXT_COLUMN), seed)
                labels = table.column(LABEL_COLUMN).to_numpy().astype(np.int64)
                for target, mask in plan.targets(name, hashes.split_hash, labels).items():
                    keep = mask & plan.keep[target].below(hashes.sample_hash, labels)
                    if keep.any():
                        writer.write(target, table.filter(pa.array(keep)))
            if missing:
                dropped[name] = {"missing_text_or_label": missing}
            log.info(
                "%s collect: read %s (%s so far)",
                PROGRESS_MARK,
                name,
                format_duration(time.monotonic() - started),
            )
        written = writer.close_splits()
        check_class_counts(
            {s: {names.index(n): c for n, c in info.label_counts.items()} for s, info in written.items()},
            names,
        )
        log.info(
            "%s collect: wrote %s to %s in %s",
            PROGRESS_MARK,
            ", ".join(f"{split} {info.rows:,} rows" for split, info in written.items()),
            prefix,
            format_duration(time.monotonic() - started),
        )
        source_info: dict[str, Any] = {
            "source": source,
            "dataset_config": dataset_config,
            "text_column": text_col,
            "label_column": label_col,
            "label_ids": {str(raw): int(i) for raw, i in mapping.items()},  # source value → id
            "sample_size": sample_size,
            "eval_sample_size": eval_sample_size,
            "sampling": plan.mode,  # exact (stratified ranks) or fraction: see sentiflow.data.sampling
            "source_rows": rows,
            "seed": seed,
            "split_origin": plan.origin,
        }
        return writer.finish(splits=written, kind="raw", run_id=run_id, source=source_info, dropped=dropped)


def _encode_batch(
    batch: pa.Table, text_col: str, label_col: str, mapping: Mapping[Any, int]
) -> tuple[pa.Table, int]:
    """``text``/``label`` of one source batch; rows without text or a known label dropped (and counted)."""
    text = batch.column(text_col)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        text = pc.cast(text, pa.string())
    labels = encode_arrow(batch.column(label_col), mapping)
    valid = pc.and_(pc.is_valid(text), pc.is_valid(labels))
    table = pa.table({TEXT_COLUMN: text, LABEL_COLUMN: labels}).filter(valid)
    return table, batch.num_rows - table.num_rows
