"""The deployments' rows in the shared database: one per ``POST /deploy`` and how it ended.

``serving.model.deploy`` writes them (the alias move a deploy made, then its final status) and reads them
for ``/deploy/status``, so every replica answers the same.

Each unfinished deployment carries a lease (``lease_owner``, ``lease_until``): the worker that watches it
renews the lease while it watches; a lease that ran out means its watcher died (its pod was killed), and
any live worker may take it over (``take``, a compare-and-set on the owner it saw) and finish the job.
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

    def renew(self, deployment_id: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease; False when the deployment ended or another worker holds the lease."""
        t = deployments_table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.id == deployment_id, t.c.lease_owner == owner, t.c.status.notin_(FINAL_STATUSES))
                .values(lease_until=time.time() + lease_s)
            )
        return result.rowcount == 1

    def orphans(self, now: float | None = None) -> list[dict[str, Any]]:
        """Unfinished deployments whose lease ran out (their watcher is gone), oldest first."""
        now = time.time() if now is None else now
        t = deployments_table
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.status.notin_(FINAL_STATUSES), t.c.lease_until.is_not(None), t.c.lease_until < now)
                .order_by(t.c.requested_at)
            ).all()
        return [dict(r._mapping) for r in rows]

    def take(self, record: dict[str, Any], owner: str, lease_s: float) -> bool:
        """Take over ``record``'s expired lease; True for exactly one of the workers that try at once."""
        t = deployments_table
        now = time.time()
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(
                    t.c.id == record["id"],
                    t.c.status.notin_(FINAL_STATUSES),
                    t.c.lease_until < now,
                    t.c.lease_owner == record["lease_owner"]
                    if record.get("lease_owner") is not None
                    else t.c.lease_owner.is_(None),
                )
                .values(lease_owner=owner, lease_until=now + lease_s)
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
