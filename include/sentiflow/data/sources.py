"""Files of a dataset folder (local or ``s3://``) → one frame per split.

Layouts seen in the wild: ``train.csv``/``test.csv``; the Hub's ``data/train-00000-of-00001.parquet``
shards (any depth, several shards per split); folders named by split (``train/part-0.jsonl``); parquet,
CSV, TSV and JSON Lines. Shards of one split are concatenated in name order.
"""

from __future__ import annotations

import io
import re
from pathlib import Path, PurePosixPath

import pandas as pd

from sentiflow.data.errors import CollectError
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


def read_table(data: bytes, name: str) -> pd.DataFrame:
    lower = name.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(io.BytesIO(data))
        if lower.endswith(".tsv"):
            return pd.read_csv(io.BytesIO(data), sep="\t")
        if lower.endswith(".csv"):
            return pd.read_csv(io.BytesIO(data))
        if lower.endswith((".jsonl", ".ndjson")):
            return pd.read_json(io.BytesIO(data), lines=True)
        if lower.endswith(".json"):
            try:
                return pd.read_json(io.BytesIO(data), lines=True)
            except ValueError:
                return pd.read_json(io.BytesIO(data))
    except CollectError:
        raise
    except Exception as exc:
        raise CollectError(f"{name}: not a readable {Path(lower).suffix} file: {exc}") from exc
    raise CollectError(f"{name}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")


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


def load_files(store: ObjectStore, source: str) -> dict[str, pd.DataFrame]:
    """A single file becomes ``train``; a folder/prefix maps its files to splits by name or folder."""
    if source.lower().endswith(FILE_SUFFIXES):
        return {"train": read_table(store.read_location(source), source)}
    locations = _locations(store, source)
    shards: dict[str, list[pd.DataFrame]] = {}
    for relative in sorted(locations):
        split = split_of(relative)
        if split is not None:
            shards.setdefault(split, []).append(
                read_table(store.read_location(locations[relative]), relative)
            )
    if not shards:
        raise CollectError(
            f"{source}: no train/validation/test data files found there ({', '.join(FILE_SUFFIXES)}; "
            f"files seen: {sorted(locations)[:20] or 'none'})"
        )
    if "train" not in shards:
        raise CollectError(f"{source}: has {sorted(shards)} but no train split")
    return {split: pd.concat(parts, ignore_index=True) for split, parts in shards.items()}
