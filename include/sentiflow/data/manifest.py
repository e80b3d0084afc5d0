"""The snapshot manifest: what a snapshot holds, in which parquet parts, with which checksums.

A snapshot without a manifest is incomplete by definition, so readers only ever start from a manifest
URI. Schema version 2 lists each split as parts (bounded rows each, with rows, sha256 and label counts);
version 1 manifests (one parquet object per split: ``uri`` + ``sha256``) are read as a one-part split, so
every snapshot in a bucket stays readable.

**Signed.** The pipeline signs each manifest with its private key (the key that signs model versions) and
every step verifies it before it reads a row (``read_manifest``): the manifest holds each part's sha256, so
a verified manifest vouches for every row the steps then read. Whoever can write the bucket's dataset
prefix can then delete a snapshot, never make the pipeline train on rows it did not write. The signature is
``manifest.json.sig`` beside it; the keys it verifies with are the configured public keys plus the public
half of the pipeline's own key (``trusted_manifest_keys``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from sentiflow.names import LABEL_COLUMN, TEXT_COLUMN
from sentiflow.storage import ObjectStore

log = logging.getLogger(__name__)

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


def manifest_payload(manifest: Manifest) -> bytes:
    """The bytes written, signed and verified: one serialisation, so signature and file cannot differ."""
    return json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True).encode()


def signature_uri(manifest_uri: str) -> str:
    return f"{manifest_uri}.sig"


def trusted_manifest_keys() -> list[str | Path]:
    """The configured public keys (``SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS``, rotation included) and the
    public half of this process's own signing key: the trainer pod holds only the latter."""
    from sentiflow.security.signing import public_pem
    from sentiflow.settings.components import SigningSettings
    from sentiflow.settings.server import ServerSettings

    keys: list[str | Path] = [k for k in ServerSettings().signing_public_keys if k]
    own = SigningSettings().key()
    if own is not None:
        keys.append(public_pem(own))
    return keys


def sign_manifest(payload: bytes) -> str | None:
    """The signature of a manifest's bytes with the pipeline's key; None where it has none (development:
    it signs no model either)."""
    from sentiflow.security.signing import sign_bytes
    from sentiflow.settings.components import SigningSettings

    key = SigningSettings().key()
    return None if key is None else sign_bytes(payload, key)


def verify_manifest(store: ObjectStore, manifest_uri: str, payload: bytes) -> None:
    """``SnapshotError`` unless ``payload`` carries the pipeline's signature; no key at all is refused too,
    outside the development setting that loads unsigned models (which production refuses)."""
    from sentiflow.security.signing import SignatureError, verify_bytes
    from sentiflow.settings.server import ServerSettings

    keys = trusted_manifest_keys()
    if not keys:
        if not ServerSettings().allow_unsigned_models:
            raise SnapshotError(
                f"{manifest_uri} cannot be verified: no key (SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS or the "
                "pipeline's SENTIFLOW_SIGNING_PRIVATE_KEY[_PATH]); on a development machine only, "
                "SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS=true reads it unverified"
            )
        log.warning("no signing key: reading %s WITHOUT verifying its signature", manifest_uri)
        return
    try:
        signature = store.get_bytes(signature_uri(manifest_uri)).decode()
    except FileNotFoundError as exc:
        raise SnapshotError(
            f"{manifest_uri} is not signed by the pipeline (no {signature_uri(manifest_uri)}): it was not "
            "written by this pipeline, or before manifests were signed; collect the dataset again"
        ) from exc
    try:
        verify_bytes(payload, signature, keys, what=manifest_uri)
    except SignatureError as exc:
        raise SnapshotError(f"{exc}: the manifest changed after the pipeline wrote it") from exc


def read_manifest(store: ObjectStore, manifest_uri: str) -> Manifest:
    """The snapshot's manifest, its signature verified first (``verify_manifest``)."""
    try:
        payload = store.get_bytes(manifest_uri)
    except FileNotFoundError as exc:
        raise SnapshotError(
            f"no manifest at {manifest_uri}: the snapshot does not exist or is incomplete"
        ) from exc
    verify_manifest(store, manifest_uri, payload)
    raw = json.loads(payload)
    version = int(raw.get("schema_version", 1)) if isinstance(raw, dict) else 0
    if version > SCHEMA_VERSION:
        raise SnapshotError(
            f"{manifest_uri} has schema version {version}; this sentiflow reads up to {SCHEMA_VERSION}"
        )
    return Manifest.model_validate(raw)
