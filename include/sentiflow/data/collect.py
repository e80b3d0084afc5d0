"""collect: any labelled text dataset → a raw snapshot (train/validation/test parquet + manifest) in S3.

Sources: a Hugging Face dataset name (optionally with a config), or a local/``s3://`` parquet or CSV file,
or a folder/prefix holding ``train``/``validation``/``test`` files. Column names, label names and the number
of classes are detected (hints override), a stratified seeded validation (and test) split is carved from train
when the source has none, and everything lands under a run-scoped prefix with the manifest written last.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiflow.config import S3Settings
from sentiflow.data.snapshot import write_snapshot
from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.progress import PROGRESS_MARK, format_duration
from sentiflow.storage import ObjectStore, S3Uri, is_s3_uri

log = logging.getLogger(__name__)


class CollectError(ValueError):
    """The source cannot become a labelled text snapshot; the message says why and what was seen."""


TEXT_CANDIDATES = ("text", "review", "sentence", "content", "document", "tweet", "body", "comment")
LABEL_CANDIDATES = ("label", "labels", "sentiment", "target", "class", "polarity", "rating_label")
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
SENTIMENT_ORDER = ("negative", "neutral", "positive")
#: Short sentiment names (the Hub's imdb says neg/pos) become the full words the rest of the product uses.
SENTIMENT_ABBREVIATIONS = {"neg": "negative", "pos": "positive", "neu": "neutral"}
FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")


# --- reading sources ------------------------------------------------------------------------------
def _read_table(data: bytes, name: str) -> pd.DataFrame:
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")):
        return pd.read_parquet(io.BytesIO(data))
    if lower.endswith(".tsv"):
        return pd.read_csv(io.BytesIO(data), sep="\t")
    if lower.endswith(".csv"):
        return pd.read_csv(io.BytesIO(data))
    raise CollectError(f"{name}: unsupported file type; use parquet or CSV ({', '.join(FILE_SUFFIXES)})")


def _split_of(filename: str) -> str | None:
    stem = Path(filename).name.split(".")[0].lower()
    return SPLIT_ALIASES.get(stem)


def _load_files(store: ObjectStore, source: str) -> dict[str, pd.DataFrame]:
    """A single file becomes ``train``; a folder/prefix maps ``train.*``/``validation.*``/``test.*``."""
    if source.lower().endswith(FILE_SUFFIXES):
        return {"train": _read_table(store.read_location(source), source)}
    if is_s3_uri(source):
        prefix = S3Uri.parse(source.rstrip("/") + "/")
        names = [k for k in store.list_keys(prefix) if k.lower().endswith(FILE_SUFFIXES)]
        locations = {k.rsplit("/", 1)[-1]: str(S3Uri(prefix.bucket, k)) for k in names}
    else:
        folder = Path(source).expanduser()
        locations = {
            p.name: str(p) for p in sorted(folder.iterdir()) if p.name.lower().endswith(FILE_SUFFIXES)
        }
    frames = {}
    for name, location in locations.items():
        split = _split_of(name)
        if split is not None:
            frames[split] = _read_table(store.read_location(location), name)
    if not frames:
        raise CollectError(
            f"{source}: no train/validation/test parquet or CSV files found there "
            f"(files seen: {sorted(locations) or 'none'})"
        )
    if "train" not in frames:
        raise CollectError(f"{source}: has {sorted(frames)} but no train split")
    return frames


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
        return _load_files(store, source), {}
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
        best = max(lengths, key=lengths.get)
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


def _default_names(ids: Sequence[int]) -> list[str]:
    count = max(ids) + 1
    if count == 2:
        return ["negative", "positive"]
    if count == 3:
        return list(SENTIMENT_ORDER)
    return [str(i) for i in range(count)]


def _expand_abbreviations(names: list[str]) -> list[str]:
    lowered = [n.lower() for n in names]
    if set(lowered) <= set(SENTIMENT_ABBREVIATIONS):
        return [SENTIMENT_ABBREVIATIONS[n] for n in lowered]
    return list(names)


def encode_labels(
    values: pd.Series, column: str, known_names: list[str] | None = None
) -> tuple[pd.Series, list[str]]:
    """Label values → int ids 0..K-1 and their names.

    Integers keep their ids (names from the source schema, else negative/positive or
    negative/neutral/positive by count); strings become ids in sentiment order when they are sentiment
    words, else alphabetical. Anything else is rejected with the dtype and an example.
    """
    non_null = values.dropna()
    if non_null.empty:
        raise CollectError(f"label column {column!r} is empty")
    if pd.api.types.is_bool_dtype(non_null):
        non_null = non_null.astype(int)
        values = values.astype("Int64")
    if pd.api.types.is_float_dtype(non_null) and np.all(np.mod(non_null.to_numpy(), 1) == 0):
        values = values.astype("Int64")
        non_null = non_null.astype(int)
    if pd.api.types.is_integer_dtype(non_null):
        ids = sorted(int(v) for v in non_null.unique())
        if ids[0] < 0:
            raise CollectError(f"label column {column!r} has negative ids {ids[:5]}; expected 0..K-1")
        names = _expand_abbreviations(known_names) if known_names else _default_names(ids)
        if ids[-1] >= len(names):
            raise CollectError(f"label column {column!r} has id {ids[-1]} but only {len(names)} label names")
        return values.astype("Int64"), list(names)
    if non_null.map(lambda v: isinstance(v, str)).all():
        distinct = sorted(set(non_null))
        lowered = _expand_abbreviations([d.lower() for d in distinct])
        if set(lowered) <= set(SENTIMENT_ORDER):
            names = [n for n in SENTIMENT_ORDER if n in lowered]
            mapping = {d: names.index(full) for d, full in zip(distinct, lowered, strict=True)}
        else:
            names = distinct
            mapping = {d: i for i, d in enumerate(distinct)}
        return values.map(mapping).astype("Int64"), names
    example = non_null.iloc[0]
    raise CollectError(
        f"label column {column!r} has values that are neither integers nor strings "
        f"(dtype {values.dtype}, e.g. {example!r} of type {type(example).__name__})"
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
    label_names: list[str] | None = None,
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

    unified: dict[str, pd.DataFrame] = {}
    names: list[str] | None = None
    dropped: dict[str, dict[str, int]] = {}
    for split, frame in frames.items():
        for column in (text_col, label_col):
            if column not in frame.columns:
                raise CollectError(
                    f"split {split!r} has no column {column!r}; columns seen: {list(frame.columns)}"
                )
        labels, split_names = encode_labels(frame[label_col], label_col, known)
        if names is None:
            names = split_names
            known = known or split_names
        elif split_names != names:
            raise CollectError(f"split {split!r} has labels {split_names}, train has {names}")
        out = pd.DataFrame({TEXT_COLUMN: frame[text_col], LABEL_COLUMN: labels})
        missing = out[TEXT_COLUMN].isna() | out[LABEL_COLUMN].isna()
        if missing.any():
            dropped[split] = {"missing_text_or_label": int(missing.sum())}
        out = out[~missing]
        out = out.assign(text=out[TEXT_COLUMN].astype(str), label=out[LABEL_COLUMN].astype("int64"))
        unified[split] = out.reset_index(drop=True)
    assert names is not None

    present = sorted(set(unified["train"][LABEL_COLUMN]))
    if len(present) < 2:
        only = names[present[0]] if present else "none"
        raise CollectError(f"the train split has a single class ({only!r}); a classifier needs at least two")

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
