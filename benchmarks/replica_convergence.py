"""Replica convergence on a real Postgres: how long after an alias move every model-server replica serves it.

Starts its own S3 + MLflow on free ports (temp home) and a throwaway PostgreSQL cluster (Debian's binaries,
``tests/pgcluster.py``), runs the schema migrations once (the one step, as compose and k8s do), registers a
TF-IDF version and a small transformer version (the shared MiniLM cut to one layer, random head: the
interfaces and the load path of a real one, a fraction of its weight), and starts three model servers
(default settings: 2 workers, ``reload_poll_s`` 1 s, ``onnx-int8``; each its own state folder) on the one
Postgres database, with nginx in front (round robin, the Kubernetes Service locally). Under continuous
``/predict`` load through the proxy at concurrency 8 it moves ``champion`` ``--moves`` times, alternating
the two versions, as the pipeline's release does: ``release.flow.stage`` (the ``candidate`` alias names the
version and every replica stages it: downloaded, verified, deserialized, prepared and warmed up, not
served), then ``release.flow.promote`` (the signed approval, then the alias move). For each move it
measures the seconds staging took (``stage_s``), the seconds ``promote`` took (``promote_s``: the registry
reads, the approval's signature and tags, then the alias move as its last request) and the seconds from the
alias move until ``GET /replicas`` shows every replica serving it (``converge_s``, the move). The first move
goes to the transformer version no replica has loaded before (``first_move_fresh_transformer_s``).

Half-way, one replica is killed with ``kill -9`` (gunicorn master and workers) and restarted at once;
``killed_replica_serving_after_s`` is the time from the restart until that replica serves the alias's
version with all its workers. The load keeps running through the proxy meanwhile (``non_2xx`` counts it
all). The next move waits until the dead replica's rows have left the live list (``REPLICA_TTL_S``).

Registry load: each replica counts its alias reads in its row (``alias_polls``; one request reads the
followed alias and the candidate together); the rate over the run per replica is the steady cost of
following the alias. Model loads (per move: a version and a run read per worker to stage, one download per
replica, one approval read per worker at the move) are reported beside it.

    .venv/bin/python benchmarks/replica_convergence.py
    .venv/bin/python benchmarks/replica_convergence.py --moves 4 --workers 1   # quicker
"""

from __future__ import annotations

import argparse
import signal
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

from _common import cpu_flags, record  # noqa: E402

from sentiflow.localstack import stack as localstack  # noqa: E402


def stage(client, settings, server, version: str, timeout_s: float) -> float:
    """What the pipeline's release does before promoting: every replica stages ``version``; seconds."""
    from sentiflow.release import flow

    t0 = time.monotonic()
    if not flow.stage(client, settings, server, version, timeout_s=timeout_s):
        raise RuntimeError(f"not every replica staged version {version} within {timeout_s}s")
    return round(time.monotonic() - t0, 3)


def move(client, settings, version: str) -> float:
    """What the pipeline's promote does (its signed approval, then the alias move); seconds it took. The
    release's ``finish`` comes once every replica serves it."""
    from sentiflow.release import flow

    t0 = time.monotonic()
    flow.promote(client, settings, version, reason="replica_convergence benchmark move")
    return round(time.monotonic() - t0, 3)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers per replica (the default: 2)")
    p.add_argument("--moves", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--poll-s", type=float, default=1.0, help="SENTIFLOW_SERVER_RELOAD_POLL_S (default 1.0)")
    p.add_argument("--pause-s", type=float, default=3.0, help="seconds between a converged move and the next")
    p.add_argument("--timeout-s", type=float, default=180.0, help="give up on one move after this long")
    p.add_argument("--no-kill", action="store_true", help="skip the kill -9 and restart of one replica")
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


def live(url: str) -> list[dict]:
    try:
        return requests.get(f"{url}/replicas", timeout=10).json()["replicas"]
    except (requests.RequestException, ValueError, KeyError):
        return []


def all_serve(url: str, version: str, replicas: int) -> bool:
    answer = live(url)
    return len(answer) == replicas and all(r["version"] == version for r in answer)


def transformer_dir(home: Path) -> Path:
    """The shared MiniLM with one transformer layer (its first), random classification head, + tokenizer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    source = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2"
    config = AutoConfig.from_pretrained(source, num_hidden_layers=1, num_labels=2)
    model = AutoModelForSequenceClassification.from_pretrained(source, config=config)
    target = home / "minilm-1-layer"
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def register_transformer(model_dir: Path) -> str:
    import mlflow

    from sentiflow.families.transformer.model import TransformerClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    clf = TransformerClassifier.from_pretrained(str(model_dir), ["negative", "positive"], max_length=128)
    with mlflow.start_run():
        info = log_classifier(clf, registered_model_name=MLflowSettings().registered_model_name)
    return str(info.registered_model_version)


def kill_and_restart(server, proxy_url: str, version: str, ttl_s: float) -> float:
    """kill -9 ``server``'s process group, restart it; seconds from the restart until it serves
    ``version``."""
    from sentiflow.localstack.supervisor import port_in_use

    server.kill()
    gone = time.monotonic() + 90  # the killed sockets close as the kernel reaps the processes
    while port_in_use(server.port) and time.monotonic() < gone:
        time.sleep(0.2)
    t0 = time.monotonic()
    server.start()
    replica_id = requests.get(f"{server.url}/health", timeout=10).headers["X-Sentiflow-Replica"]
    while True:
        mine = [r for r in live(server.url) if r["replica_id"] == replica_id]
        if mine and mine[0]["version"] == version and mine[0]["state"] == "serving":
            serving_after = time.monotonic() - t0
            break
        if time.monotonic() - t0 > 300:
            raise RuntimeError("the restarted replica never served the alias's version")
        time.sleep(0.1)
    # the killed replica's rows leave the live list after the TTL; moves are timed on a clean list
    deadline = time.monotonic() + ttl_s + 30
    while len(live(proxy_url)) != 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    return round(serving_after, 3)


def machine_note(load_avg_start: tuple[float, float, float]) -> str:
    """Whether other jobs shared the cores when the run started (its own servers come after)."""
    if load_avg_start[0] < 1.0:
        return "quiet 2-core machine: nothing else ran when the benchmark started (load average in the table)"
    return "shared 2-core machine: other jobs ran (load average in the table), so times are upper bounds"


def simd_flags() -> str:
    """The CPU's vector extensions: what the ONNX runtime's int8 kernels use."""
    return " ".join(f for f in cpu_flags() if f.startswith(("avx", "amx", "sse4", "vnni")))


def main() -> int:
    args = parse_args()
    import os

    home = Path(tempfile.mkdtemp(prefix="sentiflow-replicas-"))
    stack = localstack.stack_on_free_ports(home)
    os.environ.update(localstack.client_env(stack))
    os.environ["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"] = "replica-convergence"
    from sentiflow import registry
    from sentiflow.release import flow
    from sentiflow.serving_client import ModelServerClient
    from sentiflow.settings.components import MLflowSettings
    from sentiflow.settings.server import ServerSettings
    from serving.store.db import Database
    from serving.store.migrate import upgrade
    from serving.store.replicas import ReplicaStore
    from tests.devproxy import RoundRobinProxy
    from tests.devserver import DevServer, register_tfidf_versions
    from tests.pgcluster import PgCluster

    servers: list[DevServer] = []
    proxy = None
    cluster = PgCluster.start()
    load_avg_start = os.getloadavg()
    killed_after: float | None = None
    try:
        localstack.up(stack, ["s3", "mlflow"], with_airflow=False)
        versions = [register_tfidf_versions(1)[0], register_transformer(transformer_dir(home))]
        families = {versions[0]: "tfidf", versions[1]: "transformer"}
        settings = MLflowSettings()
        client = registry.mlflow_client(settings)
        move(client, settings, versions[0])
        flow.finish(client, settings)
        db_url = cluster.new_database("model_server")
        upgrade(db_url)  # the one migration step, before any replica
        env = {
            "SENTIFLOW_SERVER_WORKERS": str(args.workers),
            "SENTIFLOW_SERVER_RELOAD_POLL_S": str(args.poll_s),
            "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db_url,
            # The shipped default (DevServer turns it off: test servers mostly serve TF-IDF).
            "SENTIFLOW_SERVER_PRELOAD_LIBRARIES": "true",
        }
        servers = [
            DevServer(
                stack,
                env,
                state_root=home / f"state-{i}",
                name=f"replica-{i}",
                port=localstack.free_port(),
                migrate=False,
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

        store = ReplicaStore(Database(db_url))
        polls_before = sum(store.alias_polls().values())
        started = time.monotonic()
        load = Load(proxy.url, args.concurrency).start()
        time.sleep(2.0)
        converge: list[float] = []
        staged_s: list[float] = []
        promote_s: list[float] = []
        by_family: dict[str, list[float]] = {"tfidf": [], "transformer": []}
        server = ModelServerClient(proxy.url, timeout_s=30)
        for i in range(args.moves):
            target = versions[(i + 1) % 2]
            staged_s.append(stage(client, settings, server, target, args.timeout_s))
            promote_s.append(move(client, settings, target))
            t0 = time.monotonic()  # champion names the target now: its move was promote's last request
            while not all_serve(proxy.url, target, args.replicas):
                if time.monotonic() - t0 > args.timeout_s:
                    raise RuntimeError(
                        f"move {i + 1} to version {target} did not converge in {args.timeout_s}s"
                    )
                time.sleep(0.05)
            converge.append(round(time.monotonic() - t0, 3))
            flow.finish(client, settings)
            by_family[families[target]].append(converge[-1])
            print(
                f"move {i + 1}: {families[target]} version {target} staged in {staged_s[-1]:.2f}s, "
                f"on all {args.replicas} replicas {converge[-1]:.2f}s after the alias move",
                flush=True,
            )
            time.sleep(args.pause_s)
            if not args.no_kill and i + 1 == args.moves // 2:
                killed_after = kill_and_restart(servers[0], proxy.url, target, ServerSettings().replica_ttl_s)
                print(
                    f"replica-0 killed (kill -9) and restarted: serving after {killed_after:.2f}s", flush=True
                )
        load.stop()
        elapsed = time.monotonic() - started
        polls = sum(store.alias_polls().values()) - polls_before
        store.db.dispose()
    finally:
        if proxy is not None:
            proxy.stop()
        for s in servers:
            s.stop()
        localstack.down(stack, ["s3", "mlflow"])
        cluster.stop()
    load_avg_end = os.getloadavg()

    non_2xx = sum(1 for s in load.statuses if not 200 <= s < 300)
    # Per move: a version and a run-metrics read per worker to stage, one download per replica (shared), an
    # approval read per worker at the move.
    loads_per_replica = (3 * args.workers + 1) * args.moves
    result = {
        "database": "postgresql",
        "families": sorted(set(families.values())),
        "replicas": args.replicas,
        "workers_per_replica": args.workers,
        "reload_poll_s": args.poll_s,
        "concurrency": args.concurrency,
        "moves": args.moves,
        "staged_before_each_move": True,
        "stage_s": staged_s,
        "promote_s": promote_s,
        "converge_s": converge,
        "converge_s_by_family": by_family,
        "first_move_fresh_transformer_s": converge[0],
        "first_move_fresh_transformer_stage_s": staged_s[0],
        "p50_converge_s": round(statistics.median(converge), 3),
        "max_converge_s": max(converge),
        "requests": len(load.statuses),
        "non_2xx": non_2xx,
        "answers_by_version": load.versions,
        "killed_replica_serving_after_s": killed_after,
        "seconds": round(elapsed, 1),
        "registry_requests_per_s_per_replica": round(polls / elapsed / args.replicas, 3),
        "registry_load_requests_per_s_per_replica": round(loads_per_replica / elapsed, 3),
        "load_average_start": [round(x, 2) for x in load_avg_start],
        "load_average_end": [round(x, 2) for x in load_avg_end],
        "preload_libraries": True,
        "cpu_flags": simd_flags(),
        "note": machine_note(load_avg_start),
    }
    row = " | ".join(
        str(v)
        for v in (
            "postgresql",
            args.replicas,
            args.moves,
            result["p50_converge_s"],
            result["max_converge_s"],
            converge[0],
            staged_s[0],
            round(statistics.median(promote_s), 3),
            max(by_family["tfidf"] or [0]),
            max(by_family["transformer"] or [0]),
            result["requests"],
            non_2xx,
            killed_after,
            result["registry_requests_per_s_per_replica"],
            " / ".join(f"{x:.1f}" for x in load_avg_start),
        )
    )
    markdown = "\n".join(
        [
            f"Three replicas ({args.workers} gunicorn workers each, `reload_poll_s` {args.poll_s:g} s, "
            "default runtime `onnx-int8`) on one real PostgreSQL database (migrated once before they "
            "started) behind",
            f"nginx (round robin); {args.moves} alias moves alternating a TF-IDF version and a transformer "
            "version (MiniLM cut to 1 layer) under",
            f"`/predict` load at concurrency {args.concurrency} through the proxy, the first one to the "
            "transformer no replica had loaded. Each move is staged first, as the release does",
            "(`release.flow.stage`: every replica downloads, verifies and warms the `candidate` up, "
            "unserved); then seconds from the move",
            "(`release.flow.promote` returned: approval signed, alias moved last) until `GET /replicas` "
            "shows every replica serving the version (`promote` itself: its own column).",
            "Half-way, one replica was killed with `kill -9` (master and workers) and restarted at once.",
            machine_note(load_avg_start) + f". CPU flags: {simd_flags()}.",
            "",
            "| database | replicas | moves | p50 move (s) | max move (s) | first move, fresh transformer (s) "
            "| its staging (s) | p50 promote (s) | max TF-IDF (s) | max transformer (s) | requests | non-2xx "
            "| killed replica serving after (s) | alias reads/s/replica | load average 1/5/15 min |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {row} |",
            "",
            f"Per move (s): {', '.join(f'{c:.2f}' for c in converge)}; its staging before (s): "
            f"{', '.join(f'{c:.2f}' for c in staged_s)}. Targets: every move ≤ 10 s, non-2xx 0, ≤ 1 "
            "registry request per second per replica for following the alias and the candidate (a move adds "
            "a version and a run read per worker and one download per replica to stage, and an approval "
            "read per worker to swap).",
        ]
    )
    print(markdown)
    if not args.no_record:
        record("replica_convergence", result, markdown)
    return 0


if __name__ == "__main__":
    # A SIGTERM (kill, a CI timeout) unwinds like Ctrl-C, so the finally block stops what this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
