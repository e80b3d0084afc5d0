"""collect: any labelled text dataset → a raw snapshot (train/validation/test parquet + manifest) in S3.

Sources: a Hugging Face dataset name (optionally with a config), or a local/``s3://`` parquet or CSV file,
or a folder/prefix holding ``train``/``validation``/``test`` files. Column names, label names and the number
of classes are detected (hints override), a stratified seeded validation (and test) split is carved from train
when the source has none, and everything lands under a run-scoped prefix with the manifest written last.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sentiflow.config import S3Settings
from sentiflow.data.errors import CollectError
from sentiflow.data.labels import apply_encoding, check_classes, encode_labels, label_encoding
from sentiflow.data.snapshot import write_snapshot
from sentiflow.data.sources import FILE_SUFFIXES, SPLIT_ALIASES, load_files
from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.progress import PROGRESS_MARK, format_duration
from sentiflow.storage import ObjectStore, S3Uri, is_s3_uri

__all__ = ["CollectError", "collect", "encode_labels", "load_source", "sanitize_run_id", "snapshot_prefix"]

log = logging.getLogger(__name__)


TEXT_CANDIDATES = ("text", "review", "sentence", "content", "document", "tweet", "body", "comment")
LABEL_CANDIDATES = ("label", "labels", "sentiment", "target", "class", "polarity", "rating_label")


# --- reading sources ------------------------------------------------------------------------------
def _load_hub(name: str, config_name: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Load with Hugging Face ``datasets``; also return ClassLabel names per column."""
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
    frames: dict[str, pd.DataFrame] = {}
    class_names: dict[str, list[str]] = {}
    for split_name, split in dataset_dict.items():
        canonical = SPLIT_ALIASES.get(split_name.lower())
        if canonical is None:
            continue  # e.g. IMDb's "unsupervised" split has no labels
        frames[canonical] = split.to_pandas()
        for column, feature in split.features.items():
            if isinstance(feature, datasets.ClassLabel):
                class_names[column] = list(feature.names)
    if "train" not in frames:
        raise CollectError(f"dataset {name!r} has splits {list(dataset_dict)} but none is a train split")
    return frames, class_names


def load_source(
    source: str, *, config_name: str | None = None, store: ObjectStore | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Frames per canonical split name, and label names known from the source's schema (Hub ClassLabel)."""
    store = store or ObjectStore()
    if is_s3_uri(source) or Path(source).expanduser().exists():
        return load_files(store, source), {}
    looks_like_path = source.startswith((".", "/", "~")) or source.lower().endswith(FILE_SUFFIXES)
    if looks_like_path:
        raise CollectError(f"dataset {source!r} not found: no such file or folder")
    return _load_hub(source, config_name)


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
def _stratified_take(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    if size is None or size >= len(frame):
        return frame
    from sklearn.model_selection import train_test_split

    counts = frame[LABEL_COLUMN].value_counts()
    stratify = frame[LABEL_COLUMN] if counts.min() >= 2 and size >= len(counts) else None
    taken, _ = train_test_split(frame, train_size=size, random_state=seed, stratify=stratify)
    return taken


def _stratified_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    counts = frame[LABEL_COLUMN].value_counts()
    stratify = frame[LABEL_COLUMN] if counts.min() >= 2 else None
    rest, held = train_test_split(frame, test_size=fraction, random_state=seed, stratify=stratify)
    return rest, held


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
    config_name: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | Mapping[str, str] | None = None,
    sample_size: int | None = None,
    eval_sample_size: int | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 42,
    store: ObjectStore | None = None,
) -> str:
    """Collect ``source`` into a raw snapshot for ``run_id``; return its manifest URI.

    ``sample_size`` caps the train split and ``eval_sample_size`` each of validation and test (stratified,
    seeded); both unset keeps everything.
    """
    store = store or ObjectStore(S3Settings())
    prefix = snapshot_prefix(store, run_id, "raw")
    # A re-run replaces the snapshot: drop the old manifest first, so a failure below leaves none behind.
    store.delete(prefix.join(MANIFEST_FILE))
    started = time.monotonic()
    log.info("%s collect: reading %s", PROGRESS_MARK, source)
    frames, schema_names = load_source(source, config_name=config_name, store=store)
    log.info(
        "%s collect: read %s in %s",
        PROGRESS_MARK,
        ", ".join(f"{split} {len(frame):,} rows" for split, frame in frames.items()),
        format_duration(time.monotonic() - started),
    )

    first = frames["train"]
    text_col = detect_text_column(first, text_column)
    label_col = detect_label_column(first, text_col, label_column)
    known = label_names or schema_names.get(label_col)

    for split, frame in frames.items():
        for column in (text_col, label_col):
            if column not in frame.columns:
                raise CollectError(
                    f"split {split!r} has no column {column!r}; columns seen: {list(frame.columns)}"
                )
    # one mapping for all splits: a split cannot shift another's ids (``-1,0,1`` → 0,1,2 everywhere)
    mapping, names = label_encoding([f[label_col] for f in frames.values()], label_col, known)
    unified: dict[str, pd.DataFrame] = {}
    dropped: dict[str, dict[str, int]] = {}
    for split, frame in frames.items():
        labels = apply_encoding(frame[label_col], mapping)
        out = pd.DataFrame({TEXT_COLUMN: frame[text_col], LABEL_COLUMN: labels})
        missing = out[TEXT_COLUMN].isna() | out[LABEL_COLUMN].isna()
        if missing.any():
            dropped[split] = {"missing_text_or_label": int(missing.sum())}
        out = out[~missing]
        out = out.assign(text=out[TEXT_COLUMN].astype(str), label=out[LABEL_COLUMN].astype("int64"))
        unified[split] = out.reset_index(drop=True)

    present = sorted(set(unified["train"][LABEL_COLUMN]))
    if len(present) < 2:
        only = names[present[0]] if present else "none"
        raise CollectError(
            f"label column {label_col!r} has a single class ({only!r}) in the train split; a classifier "
            "needs at least two"
        )

    origin = {split: "source" for split in unified}
    if "test" not in unified:
        unified["train"], unified["test"] = _stratified_split(unified["train"], test_fraction, seed)
        origin["test"] = f"carved from train ({test_fraction:.0%}, stratified, seed {seed})"
    if "validation" not in unified:
        unified["train"], unified["validation"] = _stratified_split(
            unified["train"], validation_fraction, seed
        )
        origin["validation"] = f"carved from train ({validation_fraction:.0%}, stratified, seed {seed})"

    unified["train"] = _stratified_take(unified["train"], sample_size, seed)
    for split in ("validation", "test"):
        unified[split] = _stratified_take(unified[split], eval_sample_size, seed)

    ordered = {split: unified[split].reset_index(drop=True) for split in SPLITS}
    check_classes(ordered, names, LABEL_COLUMN)
    log.info(
        "%s collect: writing %s to %s",
        PROGRESS_MARK,
        ", ".join(f"{split} {len(frame):,} rows" for split, frame in ordered.items()),
        prefix,
    )
    source_info: dict[str, Any] = {
        "source": source,
        "config_name": config_name,
        "text_column": text_col,
        "label_column": label_col,
        "label_ids": {str(raw): int(i) for raw, i in mapping.items()},  # source value → id
        "sample_size": sample_size,
        "eval_sample_size": eval_sample_size,
        "seed": seed,
        "split_origin": origin,
    }
    return write_snapshot(
        store,
        prefix,
        ordered,
        kind="raw",
        run_id=run_id,
        source=source_info,
        label_names=names,
        dropped=dropped,
    )
