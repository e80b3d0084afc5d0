"""A registry version loaded in this worker: what ``GET /model`` shows, and the classifier that answers."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class LoadedModel:
    version: str
    name: str
    run_id: str | None
    family: str
    label_names: list[str]
    metrics: dict[str, float]
    loaded_at: str
    source: str
    classifier: Any = field(repr=False)
    runtime: str = "torch"
    #: An ONNX runtime's file: ``shipped`` with the version or ``built`` by this replica; else None.
    runtime_source: str | None = None
    #: Why the configured runtime does not serve (PyTorch does instead); None when it serves.
    runtime_fallback: str | None = None
    #: The logged model the version was made from (what its signature and approval name).
    model_id: str | None = None

    def info(self) -> dict[str, Any]:
        """Every field but the classifier and the model id: the body of ``GET /model`` (``schemas.ModelInfo``
        documents it)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("classifier", "model_id")
        }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
