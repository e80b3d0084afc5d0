"""Every worker of every replica follows one registry alias; failed loads heal by themselves.

Two daemon threads per worker:

- the *poller* reads the alias's version every ``reload_poll_s`` and writes this worker's heartbeat row
  (version served, runtime, the version it is loading, its last load error) to the shared database. The
  replica's workers take turns through ``ReplicaStore.claim_alias_poll``: one registry request per poll
  interval per replica, whatever the worker count; the winner stores its reading for the others.
  That stored reading is only a hint to look now, never a decision: a worker acts only on its own registry
  reading. When the stored one differs from what the worker follows, it reads the registry itself, and
  every worker reads it itself at least every ``OWN_READ_EVERY_POLLS`` intervals, so a row written by
  anyone else (a forged version, a frozen poll slot) neither changes what is served nor holds back a move
  for longer than that.
- the *loader* loads, warms up and swaps in the alias's version whenever it differs from the one served.
  A failed load (registry, S3 or the artifact unavailable, a model that cannot predict) keeps the old
  model, is recorded in the worker's row, and is retried with exponential backoff, so a replica becomes
  ready by itself when the dependency returns. ``/ready`` says why until then. With nothing to load, it
  *stages* the version the release's ``candidate`` alias names (read in the same registry request as the
  followed alias): loaded, verified and warmed up but not served, since the release signs its approval
  only when it promotes (``ModelManager.stage``). The worker's row reports the staged version or why
  staging failed; the release waits for every replica to report it before it moves the alias.

No record of what to serve is kept here: the alias is read again on every poll, and a restarted replica
simply loads what the alias names. The follower drives the model it is given through ``ServedModel``
(``serving.model.manager.ModelManager`` in the app) and never reaches into it; the app owns both, and the
replica id.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sentiflow.registry import RegistryUnavailableError
from sentiflow.settings.server import ServerSettings
from serving.model.loaded import LoadedModel
from serving.model.registry_reader import RegistryReader
from serving.store.replicas import ReplicaStore

log = logging.getLogger(__name__)

#: A worker reads the registry itself at least once per this many poll intervals, whatever the shared row
#: says: a row that never changes (a stalled or forged poll slot) delays a move by this much at most.
OWN_READ_EVERY_POLLS = 10


@dataclass
class _Attempts:
    """The last failed attempt at one version (loading it, or staging it) and when to try it again:
    exponential backoff from ``load_retry_initial_s`` up to ``load_retry_max_s``."""

    error: str | None = None
    version: str | None = None
    at: float | None = None  # when it failed, UNIX seconds
    failures: int = 0
    retry_at: float = 0.0  # monotonic

    def failed(self, version: str, exc: Exception, settings: ServerSettings, jitter: float = 1.0) -> float:
        """Record the failure; returns the delay before the next attempt."""
        self.failures = self.failures + 1 if self.version == version else 1
        delay = jitter * min(
            settings.load_retry_max_s, settings.load_retry_initial_s * 2 ** (self.failures - 1)
        )
        self.retry_at = time.monotonic() + delay
        self.error, self.version, self.at = f"{type(exc).__name__}: {exc}", version, time.time()
        return delay

    def waiting(self, version: str | None) -> bool:
        return self.version == version and time.monotonic() < self.retry_at

    def moved_to(self, version: str | None) -> None:
        """A new alias move gets a fresh first attempt; an error about another version is history."""
        self.retry_at = 0.0
        if self.version != version:
            self.error = self.version = self.at = None


class ServedModel(Protocol):
    """What the follower needs of the model it keeps up to date (``ModelManager``)."""

    @property
    def current(self) -> LoadedModel | None: ...

    @property
    def staged(self) -> LoadedModel | None: ...

    def swap_in(self, version: str) -> LoadedModel: ...

    def stage(self, version: str) -> LoadedModel: ...

    def drop_staged(self) -> None: ...

    def mark_unready(self, reason: str) -> None: ...


class AliasFollower:
    """Keeps ``model`` serving the version ``alias`` names, and reports it under ``replica_id``."""

    def __init__(
        self,
        model: ServedModel,
        registry: RegistryReader,
        replicas: ReplicaStore | None,
        settings: ServerSettings,
        *,
        alias: str,
        replica_id: str,
        candidate_alias: str | None = None,
    ) -> None:
        self.model = model
        self.registry = registry
        self.replicas = replicas
        self.settings = settings
        self.alias = alias
        #: The release's alias for the version it is about to promote: staged, never served from it.
        self.candidate_alias = candidate_alias
        self.replica_id = replica_id
        self.worker_id = str(os.getpid())
        self.started = threading.Event()
        self.target: str | None = None  # the alias's version as last read
        self.candidate: str | None = None  # the candidate alias's version as last read
        self.alias_error: str | None = None
        self.target_seen_at: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._beat_lock = threading.Lock()
        self._loads = _Attempts()
        self._stagings = _Attempts()
        self._db_warned = False
        self._own_read_at = -float("inf")  # monotonic time of this worker's last registry read
        self._threads = [
            threading.Thread(target=self._poll_loop, name="alias-poller", daemon=True),
            threading.Thread(target=self._load_loop, name="model-loader", daemon=True),
        ]

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker_id = str(os.getpid())
        for thread in self._threads:
            thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self.replicas is not None:
            try:  # a graceful exit leaves the live list at once; a killed one drops out after the TTL
                self.replicas.remove_worker(self.replica_id, self.worker_id)
            except Exception:
                log.debug("could not remove worker row", exc_info=True)

    def read_deployed(self) -> dict[str, Any]:
        """What ``/model`` shows as ``deployed``: the followed alias and the version it names."""
        return {
            "alias": self.alias,
            "version": self.target,
            "deployed_at": self.target_seen_at,
            "replica_id": self.replica_id,
            "load_error": self._loads.error,
        }

    # --- the poller ---------------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        if self.replicas is not None:
            try:
                self.replicas.register_replica(self.replica_id, socket.gethostname(), self.alias)
                self.replicas.prune()
            except Exception:
                log.exception("could not register replica %s in the shared database", self.replica_id)
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("alias poll failed")
            self.heartbeat()
            self._stop.wait(self.settings.reload_poll_s)

    def _read_registry(self) -> tuple[str | None, str | None, str | None]:
        """``(followed version, candidate version, error)`` from one registry request."""
        self._own_read_at = time.monotonic()
        try:
            aliases = self.registry.aliases()
        except RegistryUnavailableError as exc:
            return None, None, str(exc)
        candidate = aliases.get(self.candidate_alias) if self.candidate_alias else None
        return aliases.get(self.alias), candidate, None

    def _own_read_due(self) -> bool:
        return time.monotonic() - self._own_read_at >= OWN_READ_EVERY_POLLS * self.settings.reload_poll_s

    def poll_once(self) -> None:
        """Read the alias and tell the loader when it moved; what is applied is always this worker's own
        registry reading (a sibling's stored reading only says when to read)."""
        version: str | None
        candidate: str | None
        error: str | None
        if self.replicas is None:
            version, candidate, error = self._read_registry()
        else:
            try:
                claimed_at = self.replicas.claim_alias_poll(self.replica_id, self.settings.reload_poll_s)
                if claimed_at is not None:
                    version, candidate, error = self._read_registry()
                    # a report for /replicas and the hint for the siblings, never read back as a decision
                    self.replicas.record_alias(
                        self.replica_id, version, error, claimed_at, candidate=candidate
                    )
                else:
                    read_yet, stored, _, stored_candidate = self.replicas.replica_alias(self.replica_id)
                    moved = stored != self.target or stored_candidate != self.candidate
                    if (read_yet and moved) or self._own_read_due():
                        version, candidate, error = self._read_registry()
                    else:
                        return  # the stored reading names what this worker follows: nothing to do
                self._db_warned = False
            except Exception as exc:  # the shared database is down: follow the registry directly
                if not self._db_warned:
                    log.warning("shared database unavailable (%s); reading the alias directly", exc)
                    self._db_warned = True
                version, candidate, error = self._read_registry()
        self._apply(version, error, candidate)

    def _apply(self, version: str | None, error: str | None, candidate: str | None = None) -> None:
        alias, name = self.alias, self.registry.name
        self.alias_error = error
        current = self.model.current
        if error is None and candidate != self.candidate:
            log.info(
                "alias %s of %s names version %s (was %s)",
                self.candidate_alias,
                name,
                candidate,
                self.candidate,
            )
            self.candidate = candidate
            self._stagings.moved_to(candidate)
            self._wake.set()
        if error is not None:
            if current is None:
                self.model.mark_unready(
                    f"cannot read alias {alias!r} of model {name!r} (retrying every "
                    f"{self.settings.reload_poll_s:g}s): {error}"
                )
                self.started.set()
            return
        if version is None:
            if current is None:
                self.model.mark_unready(
                    f"alias {alias!r} of model {name!r} does not exist in the registry at "
                    f"{self.registry.tracking_uri}; POST /deploy a version"
                )
                self.started.set()
            return
        if version != self.target:
            log.info("alias %s of %s names version %s (was %s)", alias, name, version, self.target)
            self.target = version
            self.target_seen_at = datetime.now(UTC).isoformat()
            self._loads.moved_to(version)
            self._wake.set()

    def heartbeat(self) -> None:
        if self.replicas is None:
            return
        model = self.model.current
        staged = self.model.staged
        with self._beat_lock:
            try:
                self.replicas.heartbeat(
                    self.replica_id,
                    self.worker_id,
                    version=model.version if model else None,
                    family=model.family if model else None,
                    runtime=model.runtime if model else None,
                    loaded_at=model.loaded_at if model else None,
                    target_version=self.target,
                    load_error=self._loads.error,
                    error_version=self._loads.version,
                    error_at=self._loads.at,
                    staged_version=staged.version if staged else None,
                    staging_error=self._stagings.error,
                    staging_error_version=self._stagings.version,
                )
            except Exception:
                log.warning("heartbeat to the shared database failed", exc_info=True)

    # --- the loader ---------------------------------------------------------------------------------
    def _load_loop(self) -> None:
        while not self._stop.is_set():
            target = self.target
            current = self.model.current
            if target is None or (current is not None and current.version == target):
                if not self.stage_once():
                    self._wait(self.settings.reload_poll_s)
                continue
            if self._loads.waiting(target):
                self._wait(self._loads.retry_at - time.monotonic())
                continue
            self._load(target)

    def stage_once(self) -> bool:
        """Stage the candidate alias's version when it is neither served nor staged yet (a failure is
        retried with backoff); True when it tried. A staged model the candidate no longer names is dropped."""
        candidate, current, staged = self.candidate, self.model.current, self.model.staged
        if staged is not None and staged.version != candidate:
            self.model.drop_staged()
            self.heartbeat()
        if candidate is None or (current is not None and current.version == candidate):
            return False
        if staged is not None and staged.version == candidate:
            return False
        if self._stagings.waiting(candidate):
            return False
        try:
            self.model.stage(candidate)
        except Exception as exc:
            delay = self._stagings.failed(candidate, exc, self.settings)
            log.exception(
                "staging version %s of alias %s failed; retrying in %.1fs",
                candidate,
                self.candidate_alias,
                delay,
            )
        else:
            self._stagings = _Attempts()
        self.heartbeat()
        return True

    def _wait(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()

    def _load(self, version: str) -> None:
        alias = self.alias
        self.model.mark_unready(f"loading version {version} (alias {alias!r})")
        try:
            self.model.swap_in(version)
        except Exception as exc:
            delay = self._loads.failed(version, exc, self.settings, jitter=random.uniform(0.8, 1.2))
            log.exception(
                "loading version %s of alias %s failed (attempt %d); retrying in %.1fs",
                version,
                alias,
                self._loads.failures,
                delay,
            )
            self.model.mark_unready(
                f"could not load version {version} of alias {alias!r} (attempt {self._loads.failures}, "
                f"retrying in {delay:.0f}s): {self._loads.error}"
            )
        else:
            self._loads = _Attempts()
        finally:
            self.started.set()
            self.heartbeat()
