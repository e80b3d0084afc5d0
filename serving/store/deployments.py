"""The deployments' rows in the shared database: one per ``POST /deploy`` and how it ended.

``serving.model.deploy`` writes them (the alias move a deploy made, then its final status) and reads them
for ``/deploy/status``, so every replica answers the same.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from serving.store.db import Database, deployments_table

#: Statuses a deployment ends in; ``pending`` and ``loading`` are not final.
FINAL_STATUSES = ("succeeded", "failed", "superseded")


class DeploymentStore:
    """Queries on the deployments table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, record: dict[str, Any]) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(deployments_table.insert().values(**record))

    def finish(self, deployment_id: str, status: str, error: str | None = None) -> bool:
        """End a deployment that is not final yet; False when it already ended (someone else finished it)."""
        t = deployments_table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.id == deployment_id, t.c.status.notin_(FINAL_STATUSES))
                .values(status=status, error=error, finished_at=time.time())
            )
        return result.rowcount == 1

    def get(self, deployment_id: str) -> dict[str, Any] | None:
        t = deployments_table
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == deployment_id)).first()
        return None if row is None else dict(row._mapping)

    def latest(self) -> dict[str, Any] | None:
        t = deployments_table
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(t).order_by(t.c.requested_at.desc()).limit(1)).first()
        return None if row is None else dict(row._mapping)
