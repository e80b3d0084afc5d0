"""clean (the old AWS Glue job): raw snapshot → clean snapshot whose manifest points at its parent.

Cleaning is vectorized with Arrow compute kernels (RE2 regexes in C++ over whole columns): no per-row
Python, which is what makes 50k IMDb reviews take well under a second (see benchmarks/clean_throughput.py).
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sentiflow.config import S3Settings
from sentiflow.data.collect import snapshot_prefix
from sentiflow.data.snapshot import Manifest, read_manifest, read_split, write_snapshot
from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.progress import PROGRESS_MARK, format_duration
from sentiflow.storage import ObjectStore

log = logging.getLogger(__name__)


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


def clean_text(texts: pd.Series | pa.Array | pa.ChunkedArray) -> pd.Series:
    """Lowercase, strip HTML tags, unescape entities, drop special characters, collapse whitespace."""
    arr = pa.array(texts, type=pa.large_string()) if isinstance(texts, pd.Series) else texts
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, _TAG, " ")
    arr = pc.replace_substring_regex(arr, _APOSTROPHE_ENTITY, "'")
    arr = pc.replace_substring_regex(arr, _OTHER_ENTITY, " ")
    arr = pc.replace_substring_regex(arr, _APOSTROPHE_VARIANTS, "'")
    arr = pc.replace_substring_regex(arr, _SPECIAL, " ")
    arr = pc.replace_substring_regex(arr, _LONE_APOSTROPHE, " ")
    arr = pc.replace_substring_regex(arr, _WHITESPACE, " ")
    arr = pc.utf8_trim_whitespace(arr)
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


def clean_snapshot(manifest_uri: str, *, run_id: str | None = None, store: ObjectStore | None = None) -> str:
    """Clean every split of the raw snapshot at ``manifest_uri``; return the clean manifest URI."""
    store = store or ObjectStore(S3Settings())
    raw: Manifest = read_manifest(store, manifest_uri)
    run_id = run_id or raw.run_id
    prefix = snapshot_prefix(store, run_id, "clean")
    store.delete(prefix.join(MANIFEST_FILE))

    frames: dict[str, pd.DataFrame] = {}
    dropped: dict[str, dict[str, int]] = {}
    present = [split for split in SPLITS if split in raw.splits]
    for number, split in enumerate(present, start=1):
        started = time.monotonic()
        cleaned, counts = clean_frame(read_split(store, raw, split))
        log.info(
            "%s clean: split %d/%d (%s) %s -> %s rows in %s",
            PROGRESS_MARK,
            number,
            len(present),
            split,
            f"{raw.splits[split].rows:,}",
            f"{len(cleaned):,}",
            format_duration(time.monotonic() - started),
        )
        if cleaned.empty:
            raise CleanError(
                f"split {split!r} is empty after cleaning ({raw.splits[split].rows} rows before: "
                f"{counts['empty_after_cleaning']} empty, {counts['duplicate_text']} duplicates)"
            )
        frames[split] = cleaned[[TEXT_COLUMN, LABEL_COLUMN]]
        dropped[split] = counts
    return write_snapshot(
        store,
        prefix,
        frames,
        kind="clean",
        run_id=run_id,
        source={
            **raw.source,
            "cleaning": "lowercase, strip HTML, unescape entities, drop special characters",
        },
        label_names=raw.label_names,
        parent=manifest_uri,
        dropped=dropped,
    )
