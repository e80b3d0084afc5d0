"""Dataset snapshots: parquet splits (``text``, ``label``) plus a manifest written last.

A snapshot without a manifest is incomplete by definition, so readers only ever start from a manifest
URI, and writers delete any old manifest first and write the new one after every split is in place.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from sentiflow.names import LABEL_COLUMN, MANIFEST_FILE, SPLITS, TEXT_COLUMN
from sentiflow.storage import ObjectStore, S3Uri, sha256_hex

SCHEMA_VERSION = 1


class SnapshotError(ValueError):
    """A snapshot is missing, incomplete or does not match its manifest."""


class SplitInfo(BaseModel):
    uri: str
    rows: int
    label_counts: dict[str, int]
    sha256: str


class Manifest(BaseModel):
    """What a snapshot holds and where it came from (lineage for MLflow and the retrain)."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["raw", "clean", "feedback"]
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    run_id: str
    source: dict[str, Any]
    text_column: str = TEXT_COLUMN
    label_column: str = LABEL_COLUMN
    label_names: list[str]
    splits: dict[str, SplitInfo]
    parent: str | None = None
    dropped: dict[str, dict[str, int]] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def rows(self) -> dict[str, int]:
        return {name: info.rows for name, info in self.splits.items()}


def label_counts(frame: pd.DataFrame, label_names: list[str]) -> dict[str, int]:
    counts = frame[LABEL_COLUMN].value_counts()
    return {name: int(counts.get(i, 0)) for i, name in enumerate(label_names)}


def write_snapshot(
    store: ObjectStore,
    prefix: S3Uri | str,
    frames: dict[str, pd.DataFrame],
    *,
    kind: Literal["raw", "clean", "feedback"],
    run_id: str,
    source: dict[str, Any],
    label_names: list[str],
    parent: str | None = None,
    dropped: dict[str, dict[str, int]] | None = None,
    notes: dict[str, Any] | None = None,
) -> str:
    """Write ``frames`` under ``prefix`` and return the manifest URI.

    Re-running with the same prefix first removes the old manifest (so a crash mid-way leaves an
    incomplete snapshot, never a complete-looking mix), then every old object, then writes the splits and
    finally the manifest.
    """
    prefix_uri = S3Uri.parse(str(prefix))
    manifest_uri = prefix_uri.join(MANIFEST_FILE)
    if store.exists(manifest_uri):
        store.delete(manifest_uri)
    store.delete_prefix(S3Uri(prefix_uri.bucket, prefix_uri.key.rstrip("/") + "/"))

    splits: dict[str, SplitInfo] = {}
    for name, frame in frames.items():
        frame = frame[[TEXT_COLUMN, LABEL_COLUMN]].reset_index(drop=True)
        uri = prefix_uri.join(f"{name}.parquet")
        data = store.put_parquet(uri, frame)
        splits[name] = SplitInfo(
            uri=str(uri),
            rows=len(frame),
            label_counts=label_counts(frame, label_names),
            sha256=sha256_hex(data),
        )

    manifest = Manifest(
        kind=kind,
        run_id=run_id,
        source=source,
        label_names=label_names,
        splits=splits,
        parent=parent,
        dropped=dropped or {},
        notes=notes or {},
    )
    store.put_json(manifest_uri, manifest.model_dump(mode="json"))
    return str(manifest_uri)


def read_manifest(store: ObjectStore, manifest_uri: str) -> Manifest:
    try:
        raw = store.get_json(manifest_uri)
    except FileNotFoundError as exc:
        raise SnapshotError(
            f"no manifest at {manifest_uri}: the snapshot does not exist or is incomplete"
        ) from exc
    return Manifest.model_validate(raw)


def read_split(store: ObjectStore, manifest: Manifest, split: str, *, verify: bool = True) -> pd.DataFrame:
    """Read one split, checking its sha256 against the manifest (lineage must not lie)."""
    if split not in manifest.splits:
        raise SnapshotError(f"snapshot has no {split!r} split; it has {sorted(manifest.splits)}")
    info = manifest.splits[split]
    data = store.read_location(info.uri)
    if verify and sha256_hex(data) != info.sha256:
        raise SnapshotError(f"{info.uri} does not match the sha256 in its manifest: it changed after writing")
    return pd.read_parquet(io.BytesIO(data))


def read_snapshot(store: ObjectStore, manifest_uri: str) -> tuple[Manifest, dict[str, pd.DataFrame]]:
    manifest = read_manifest(store, manifest_uri)
    return manifest, {name: read_split(store, manifest, name) for name in SPLITS if name in manifest.splits}
