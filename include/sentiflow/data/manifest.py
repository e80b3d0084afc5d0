"""The snapshot manifest: what a snapshot holds, in which parquet parts, with which checksums.

A snapshot without a manifest is incomplete by definition, so readers only ever start from a manifest
URI. Schema version 2 lists each split as parts (bounded rows each, with rows, sha256 and label counts);
version 1 manifests (one parquet object per split: ``uri`` + ``sha256``) are read as a one-part split, so
snapshots written before the change still read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from sentiflow.names import LABEL_COLUMN, TEXT_COLUMN
from sentiflow.storage import ObjectStore

#: 2: splits are lists of parts. 1: one object per split (still read, never written).
SCHEMA_VERSION = 2

SnapshotKind = Literal["raw", "clean", "feedback"]


class SnapshotError(ValueError):
    """A snapshot is missing, incomplete or does not match its manifest."""


class PartInfo(BaseModel):
    """One parquet object of a split: where, how many rows, its sha256 (checked while it is read)."""

    uri: str
    rows: int
    sha256: str
    label_counts: dict[str, int] = Field(default_factory=dict)


class SplitInfo(BaseModel):
    """A split: its parts in row order and the totals over them."""

    rows: int
    label_counts: dict[str, int]
    parts: list[PartInfo]

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any) -> Any:
        """Version 1 (``uri`` + ``sha256`` of one object) is a split of one part."""
        if isinstance(data, dict) and "parts" not in data and "uri" in data:
            data = dict(data)
            part = {
                "uri": data.pop("uri"),
                "rows": data.get("rows", 0),
                "sha256": data.pop("sha256", ""),
                "label_counts": data.get("label_counts", {}),
            }
            data["parts"] = [part]
        return data

    @classmethod
    def from_parts(cls, parts: list[PartInfo]) -> SplitInfo:
        totals: dict[str, int] = {}
        for part in parts:
            for name, count in part.label_counts.items():
                totals[name] = totals.get(name, 0) + count
        return cls(rows=sum(p.rows for p in parts), label_counts=totals, parts=parts)


class Manifest(BaseModel):
    """What a snapshot holds and where it came from (lineage for MLflow and the retrain)."""

    schema_version: int = SCHEMA_VERSION
    kind: SnapshotKind
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

    def split(self, name: str) -> SplitInfo:
        """The split ``name``, or a SnapshotError naming the splits there are."""
        if name not in self.splits:
            raise SnapshotError(f"snapshot has no {name!r} split; it has {sorted(self.splits)}")
        return self.splits[name]


def read_manifest(store: ObjectStore, manifest_uri: str) -> Manifest:
    try:
        raw = store.get_json(manifest_uri)
    except FileNotFoundError as exc:
        raise SnapshotError(
            f"no manifest at {manifest_uri}: the snapshot does not exist or is incomplete"
        ) from exc
    version = int(raw.get("schema_version", 1)) if isinstance(raw, dict) else 0
    if version > SCHEMA_VERSION:
        raise SnapshotError(
            f"{manifest_uri} has schema version {version}; this sentiflow reads up to {SCHEMA_VERSION}"
        )
    return Manifest.model_validate(raw)
