"""Flood benchmark: does the model server stay up, and fair to others, while one client floods it?

Starts its own S3 + MLflow and a ``redis-server`` (the shared rate-limit store, as compose and k8s run it) on
free ports in a temp home, registers one version (the transformer family on the offline MiniLM by default,
or TF-IDF) and serves it with the default settings (2 workers x 16 threads, the default limits). Then:

1. **unloaded**: a second client (its own address, 127.0.0.2) sends single IMDb reviews one after another,
   3 a second (within the default limit of 300 a minute);
2. **flood**: one client (127.0.0.1) sends the largest requests the server allows (``max_texts`` reviews cut
   so the body stays under ``max_body_bytes``) at concurrency 32 for ``--seconds``, while the second client
   goes on as in 1.

Throughout, a prober asks ``/health`` and ``/ready`` every second with the Kubernetes probes' 5 s timeout
(``k8s/model-server.yaml``), and the gunicorn master's worker PIDs are watched (a new PID is a restart).
Records ``benchmarks/results/flood.json``: the second client's p50/p99 unloaded and flooded and their ratio,
liveness and readiness failures, worker restarts, and every status code each client got (a refused request
must be a 429 or a 503).

    nice -n 5 .venv/bin/python benchmarks/flood.py                  # transformer (MiniLM), 60 s flood
    nice -n 5 .venv/bin/python benchmarks/flood.py --family tfidf   # quick check of the harness
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests
from requests.adapters import HTTPAdapter

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO), str(REPO / "benchmarks")]

from _common import cpu_flags as machine_cpu_flags  # noqa: E402
from _common import record  # noqa: E402
from _serve_targets import ModelServer  # noqa: E402

from sentiflow.localstack import stack as localstack  # noqa: E402
from sentiflow.settings.server import ServerSettings  # noqa: E402

SHARED = REPO.parent / "shared"
LABELS = ["negative", "positive"]
JSON = {"Content-Type": "application/json"}
PROBE_TIMEOUT_S = 5.0  # k8s/model-server.yaml: livenessProbe and readinessProbe timeoutSeconds


class _FromAddress(HTTPAdapter):
    """Connections from a chosen local address: another client, as the server (and its limits) see it."""

    def __init__(self, address: str, pool: int = 10) -> None:
        self.address = address
        super().__init__(pool_connections=pool, pool_maxsize=pool)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def session(address: str, pool: int = 10) -> requests.Session:
    s = requests.Session()
    s.mount("http://", _FromAddress(address, pool))
    return s


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", choices=["transformer", "tfidf"], default="transformer")
    p.add_argument("--model-path", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--texts", default=str(SHARED / "data" / "imdb" / "test.parquet"))
    p.add_argument("--concurrency", type=int, default=32, help="the flooding client's concurrent requests")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the flood")
    p.add_argument("--unloaded-seconds", type=float, default=20.0, help="the second client alone")
    p.add_argument(
        "--single-per-s", type=float, default=3.0, help="the second client's pace (within its rate limit)"
    )
    return p.parse_args()


def register(args: argparse.Namespace) -> str:
    import mlflow

    from sentiflow.modeling.base import TextClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    clf: TextClassifier
    if args.family == "transformer":
        from sentiflow.families.transformer.model import TransformerClassifier

        # An untrained head costs the same per text as a fine-tuned one: load is what is measured.
        clf = TransformerClassifier.from_pretrained(args.model_path, LABELS, max_length=args.max_length)
    else:
        import pandas as pd

        from sentiflow.families.tfidf.model import TfidfClassifier

        train = pd.read_parquet(SHARED / "data" / "imdb" / "train.parquet").sample(n=5000, random_state=0)
        clf = TfidfClassifier.build(LABELS).fit(train["text"].tolist(), train["label"].tolist())
    settings = MLflowSettings()
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=f"flood-{args.family}"):
        info = log_classifier(clf, registered_model_name=settings.registered_model_name)
    return str(info.registered_model_version)


def largest_batch(reviews: list[str], settings: ServerSettings) -> list[str]:
    """``max_texts`` reviews, each cut so the JSON body stays just under ``max_body_bytes``."""
    per_text = min(settings.max_text_chars, (settings.max_body_bytes - 4096) // settings.max_texts - 8)
    texts = [(r * (1 + per_text // max(1, len(r))))[:per_text] for r in reviews[: settings.max_texts]]
    body = len(json.dumps({"texts": texts}).encode())
    assert body < settings.max_body_bytes, body
    return texts


class Recorder:
    """Latencies and status codes of one client, per phase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.codes: dict[str, Counter] = {}

    def add(self, phase: str, status: int | str, seconds: float) -> None:
        with self.lock:
            if status == 200:  # a refusal is fast: it must not flatter the latency
                self.latency.setdefault(phase, []).append(seconds)
            self.codes.setdefault(phase, Counter())[str(status)] += 1

    def summary(self, phase: str) -> dict:
        """Latency of the answered (200) requests; every request's status code."""
        ok = self.latency.get(phase, [])
        arr = np.asarray(ok) * 1000 if ok else np.asarray([np.nan])
        return {
            "requests": sum(self.codes.get(phase, Counter()).values()),
            "answered": len(ok),
            "status_codes": dict(self.codes.get(phase, Counter())),
            "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1),
            "max_ms": round(float(np.max(arr)), 1),
        }


def post(s: requests.Session, url: str, body: bytes, rec: Recorder, phase: str) -> None:
    t0 = time.perf_counter()
    try:
        status: int | str = s.post(url, data=body, headers=JSON, timeout=120).status_code
    except requests.RequestException as exc:
        status = type(exc).__name__  # a connection error or a timeout: neither a 429 nor a 503
    rec.add(phase, status, time.perf_counter() - t0)


def single_client(
    url: str, reviews: list[str], rec: Recorder, phase: dict, stop: threading.Event, per_s: float
) -> None:
    """One review at a time, ``per_s`` a second: a well-behaved client, within its rate limit."""
    s = session("127.0.0.2")
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        post(s, url, json.dumps({"text": reviews[i % len(reviews)][:2000]}).encode(), rec, phase["name"])
        i += 1
        stop.wait(max(0.0, 1 / per_s - (time.monotonic() - t0)))


def prober(base: str, failures: Counter, slowest: dict, stop: threading.Event) -> None:
    s = session("127.0.0.3")
    while not stop.is_set():
        for path in ("/health", "/ready"):
            t0 = time.perf_counter()
            try:
                ok = s.get(base + path, timeout=PROBE_TIMEOUT_S).status_code == 200
            except requests.RequestException:
                ok = False
            slowest[path] = max(slowest.get(path, 0.0), time.perf_counter() - t0)
            failures[path] += 0 if ok else 1
            failures[f"{path} probes"] += 1
        stop.wait(1.0)


def cpu_flags() -> str:
    have = set(machine_cpu_flags())
    if not have:
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in have) or "none of avx2/avx512/amx"


def main() -> int:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import pandas as pd

    from tests.devredis import RedisServer
    from tests.devserver import release

    home = Path(tempfile.mkdtemp(prefix="flood-"))
    stack = localstack.stack_on_free_ports(home, start_timeout_s=600)
    redis = RedisServer(stack, localstack.free_port())
    server: ModelServer | None = None
    try:
        localstack.up(stack, ["s3", "mlflow"], with_airflow=False)
        redis.start()
        os.environ.update(localstack.client_env(stack))
        version = register(args)
        server = ModelServer.start(stack, {"SENTIFLOW_SERVER_RATE_LIMIT_STORAGE_URI": redis.uri})
        release(server.url, version, token=server.token, timeout_s=900)  # the pipeline's alias move
        served = requests.get(f"{server.url}/model", timeout=10).json()
        settings = ServerSettings()  # what the server runs with: the defaults
        print(f"serving version {version} ({args.family}, runtime {served.get('runtime')})", flush=True)

        reviews = (
            pd.read_parquet(args.texts, columns=["text"])["text"].sample(n=2000, random_state=0).tolist()
        )
        batch = largest_batch(reviews, settings)
        flood_body = json.dumps({"texts": batch}).encode()  # once: the client spends its CPU on sending
        url = f"{server.url}/predict"
        master = psutil.Process(server.pid)
        workers_seen = {c.pid for c in master.children(recursive=True)}
        workers_at_start = set(workers_seen)

        single, flood = Recorder(), Recorder()
        phase = {"name": "unloaded"}
        stop_single, stop_probe = threading.Event(), threading.Event()
        failures: Counter = Counter()
        slowest: dict[str, float] = {}
        background = [
            threading.Thread(
                target=single_client, args=(url, reviews, single, phase, stop_single, args.single_per_s)
            ),
            threading.Thread(target=prober, args=(server.url, failures, slowest, stop_probe)),
        ]
        for t in background:
            t.start()
        time.sleep(args.unloaded_seconds)
        phase["name"] = "flood"
        print(f"flooding: {args.concurrency} x {len(batch)} texts for {args.seconds:.0f} s", flush=True)
        deadline = time.monotonic() + args.seconds

        def flooder() -> None:
            s = session("127.0.0.1", pool=2)
            while time.monotonic() < deadline:
                post(s, url, flood_body, flood, "flood")
                workers_seen.update(c.pid for c in master.children(recursive=True))

        with ThreadPoolExecutor(args.concurrency) as pool:
            for _ in range(args.concurrency):
                pool.submit(flooder)
        stop_single.set()
        stop_probe.set()
        for t in background:
            t.join()
        workers_seen.update(c.pid for c in master.children(recursive=True))
    finally:
        if server is not None:
            server.stop()
        redis.stop()
        localstack.down(stack, ["s3", "mlflow"])

    unloaded, loaded, flooding = single.summary("unloaded"), single.summary("flood"), flood.summary("flood")
    refused = {
        code: n
        for codes in (loaded["status_codes"], flooding["status_codes"])
        for code, n in codes.items()
        if code != "200"
    }
    result = {
        "family": args.family,
        "runtime": served.get("runtime"),
        "cpu_flags": cpu_flags(),
        "server": {
            "workers": settings.workers,
            "threads": settings.threads,
            "health_threads": settings.health_threads,
            "batch_queue_max_texts": settings.batch_queue_max_texts,
            "predict_rate_limit": settings.predict_rate_limit,
            "rate_limit_storage": "redis",
        },
        "flood": {
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "texts_per_request": len(batch),
            "chars_per_text": len(batch[0]),
            **flooding,
        },
        "second_client": {"unloaded": unloaded, "flooded": loaded},
        "p99_ratio": round(loaded["p99_ms"] / unloaded["p99_ms"], 2),
        "liveness_failures": failures["/health"],
        "readiness_failures": failures["/ready"],
        "probes": failures["/health probes"],
        "slowest_probe_ms": {k: round(v * 1000, 1) for k, v in slowest.items()},
        "worker_restarts": len(workers_seen - workers_at_start),
        "refused_status_codes": refused,
        "every_refusal_429_or_503": all(code in ("429", "503") for code in refused),
    }
    markdown = (
        f"CPU flags: {result['cpu_flags']}. {args.family} ({result['runtime']}), default settings, limits in "
        f"Redis. One client floods {args.concurrency} x {len(batch)} texts of {len(batch[0])} characters for "
        f"{args.seconds:.0f} s; another sends single reviews.\n\n"
        "| | requests | p50 ms | p99 ms | status codes |\n| --- | --- | --- | --- | --- |\n"
        f"| second client alone | {unloaded['requests']} | {unloaded['p50_ms']} | {unloaded['p99_ms']} | "
        f"{unloaded['status_codes']} |\n"
        f"| second client, flooded | {loaded['requests']} | {loaded['p50_ms']} | {loaded['p99_ms']} | "
        f"{loaded['status_codes']} |\n"
        f"| flooding client | {flooding['requests']} | {flooding['p50_ms']} | {flooding['p99_ms']} | "
        f"{flooding['status_codes']} |\n\n"
        f"p99 ratio {result['p99_ratio']}x; liveness failures {result['liveness_failures']} and readiness "
        f"failures {result['readiness_failures']} of {result['probes']} probes each (slowest "
        f"{result['slowest_probe_ms']}); worker restarts {result['worker_restarts']}; every refusal a 429 or "
        f"503: {result['every_refusal_429_or_503']}.\n"
    )
    record("flood", result, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
