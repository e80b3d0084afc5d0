"""The versions this replica has downloaded: one copy per version on the pod's disk, shared by its workers.

The first worker to need a version downloads it under ``state_dir/models``; the replica's other workers
wait on a file lock and reuse it, so a replica fetches each model from MLflow once (the artifact proxy is
the slow part of an alias move on a busy node). Only the ``keep`` most recently used versions stay, so a
rollback to the previous version needs no download and the container's disk holds a bounded number of
models (a Kubernetes pod over its ephemeral-storage limit is evicted).

The copy is not trusted because it is on our disk: every worker still verifies the signature of the folder
it loads (``sentiflow.security.signing.load_for_serving``). A download happens in a hidden temporary folder
renamed into place when complete, so a worker killed mid-download never leaves a folder that looks finished.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from sentiflow.security.signing import download_version

log = logging.getLogger(__name__)

#: Versions kept on disk: the served one, the one before (a rollback) and one more.
KEEP = 3
LOCK_FILE = ".lock"


class ModelDownloads:
    """``local_copy(uri, key)``: the folder holding version ``key``, downloaded at most once per replica."""

    def __init__(self, root: Path, keep: int = KEEP, on_download: Callable[[], None] | None = None) -> None:
        self.root = Path(root)
        self.keep = keep
        #: Called once per download from the registry (the server counts it as a registry request).
        self.on_download = on_download

    def local_copy(self, model_uri: str, key: str) -> Path:
        """The downloaded folder of ``model_uri``, named ``key`` (name, version and logged-model id)."""
        target = self.root / _safe(key)
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / LOCK_FILE)):
            if not target.is_dir():
                # Only a lock holder downloads, so any hidden folder left here is from a killed worker.
                self._remove_partial()
                started = time.monotonic()
                partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=self.root))
                if self.on_download is not None:
                    self.on_download()
                try:
                    download_version(model_uri, partial).rename(target)  # the folder, or one inside it
                finally:
                    shutil.rmtree(partial, ignore_errors=True)
                log.info(
                    "%s downloaded in %.1f s for this replica's workers",
                    model_uri,
                    time.monotonic() - started,
                )
            os.utime(target)  # most recently used: the last to be pruned
            self._prune(keep=target)
        return target

    def _remove_partial(self) -> None:
        for path in self.root.iterdir():
            if path.name.startswith(".") and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def _prune(self, *, keep: Path) -> None:
        folders = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in folders[max(self.keep - 1, 0) :]:
            shutil.rmtree(old, ignore_errors=True)


def _safe(key: str) -> str:
    """``key`` as one folder name (registered model names may hold characters a path must not)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).lstrip(".") or "model"
