"""gunicorn settings for the model server, read from ``SENTIFLOW_SERVER_*`` (``ServerSettings``).

``gthread`` workers: request threads wait on the micro-batcher while one inference thread per worker
runs the model. The timeout covers a slow model load. Each worker loads the app itself (no preload), so
a worker's model, threads and torch state are its own; only the model libraries are imported in the
master before the fork (``preload_model_libraries``). Prometheus values are shared through files.
Process-wide set-up (logging, the environment MLflow reads) happens here, never in ``create_app``.
"""

import os
import socket
import uuid
from pathlib import Path

from sentiflow.security.credentials_check import check_component
from sentiflow.settings.server import ServerSettings
from serving.process import configure_process, preload_model_libraries

# One replica id for this server's workers (read in the master, inherited by every worker it forks):
# the workers report under it in the shared database. A restarted server is a new replica.
os.environ.setdefault("SENTIFLOW_SERVER_REPLICA_ID", f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
# SENTIFLOW_ENV=production: no placeholder credentials. Before the settings parse, so a placeholder
# public-key list (`CHANGE_ME`, not JSON) is refused by name rather than as a settings parse error.
check_component("model-server")
_settings = ServerSettings()
configure_process(_settings)  # logging and MLflow's variables, once, before the workers fork
preload_model_libraries(_settings)  # shared by the forked workers: a first transformer load imports nothing
_prom_dir = Path(
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_settings.state_dir.resolve() / "prometheus"))
)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")  # the local stack passes --bind
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
# gunicorn >= 23: with reuse_port each worker binds its own SO_REUSEPORT socket and the kernel hashes new
# connections across them; with one shared socket, keep-alive connections stuck to whichever worker accepted
# first (one worker saturated, the other half idle). serve_load shows each worker's share.
reuse_port = _settings.reuse_port
timeout = _settings.timeout_s
graceful_timeout = 30
# Idle keep-alive connections stay open longer than any proxy in front keeps them (nginx and
# ingress-nginx upstream keep-alive 60 s, AWS ALB idle timeout 60 s): the proxy, not gunicorn, closes them, so
# it never sends a request on a connection gunicorn is closing (a 502). docs/deployment.md has the values.
keepalive = _settings.keepalive_s
# Several servers share a host (tests, benchmarks): no shared ~/.gunicorn control socket.
control_socket_disable = True
errorlog = "-"
loglevel = "info"


def on_starting(server):
    """Fresh metric files per server start: values of a previous run's workers must not leak in."""
    _prom_dir.mkdir(parents=True, exist_ok=True)
    for stale in _prom_dir.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    _forget_worker(server, worker.pid)


def _forget_worker(server, pid: int) -> None:
    """A worker that died (even by SIGKILL) leaves the live list now, not after ``replica_ttl_s``."""
    try:
        from serving.store.db import Database
        from serving.store.replicas import ReplicaStore

        db = Database(_settings.resolved_feedback_db_url)
        try:
            ReplicaStore(db).remove_worker(os.environ["SENTIFLOW_SERVER_REPLICA_ID"], str(pid))
        finally:
            db.dispose()
    except Exception as exc:  # the database may be down; the row then expires by itself
        server.log.warning("could not remove the row of worker %s: %s", pid, exc)
