"""State shared by all gunicorn workers through files in the server's state folder.

Workers are separate processes, so the one truth about "what is deployed" is a file: the worker that
finishes a deploy writes ``deployed.json`` (atomically, via ``os.replace``); every worker polls it and loads
the version it names. Deployment records and per-worker heartbeats live beside it, so ``/deploy/status``
and ``?wait=true`` give the same answer whichever worker a request lands on.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sentiflow.processes import pid_alive

DEPLOYED_FILE = "deployed.json"
DEPLOYMENTS_DIR = "deployments"
WORKERS_DIR = "workers"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class StateDir:
    """The server's state folder: deployed version, deployment records, worker heartbeats."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # --- the deployed version (survives restarts) --------------------------------------------------
    def read_deployed(self) -> dict[str, Any] | None:
        return _read_json(self.root / DEPLOYED_FILE)

    def write_deployed(self, record: dict[str, Any]) -> None:
        _write_json(self.root / DEPLOYED_FILE, record)

    # --- deployment records ------------------------------------------------------------------------
    def write_deployment(self, record: dict[str, Any]) -> None:
        _write_json(self.root / DEPLOYMENTS_DIR / f"{record['id']}.json", record)

    def read_deployment(self, deployment_id: str) -> dict[str, Any] | None:
        if not deployment_id.isalnum():  # ids are uuid4 hex; never let a request name another path
            return None
        return _read_json(self.root / DEPLOYMENTS_DIR / f"{deployment_id}.json")

    def latest_deployment(self) -> dict[str, Any] | None:
        folder = self.root / DEPLOYMENTS_DIR
        files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
        return _read_json(files[-1]) if files else None

    # --- worker heartbeats -------------------------------------------------------------------------
    def heartbeat(self, version: str | None) -> None:
        _write_json(
            self.root / WORKERS_DIR / f"{os.getpid()}.json",
            {"pid": os.getpid(), "version": version, "at": time.time()},
        )

    def live_worker_versions(self) -> dict[int, str | None]:
        """``{pid: version}`` of workers whose process is alive; files of dead workers are removed."""
        out: dict[int, str | None] = {}
        folder = self.root / WORKERS_DIR
        for path in folder.glob("*.json") if folder.exists() else []:
            record = _read_json(path)
            if record is None:
                continue
            pid = int(record["pid"])
            if pid_alive(pid):
                out[pid] = record.get("version")
            else:
                path.unlink(missing_ok=True)
        return out
