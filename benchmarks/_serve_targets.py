"""serve_load's harness: the servers it compares (sentiflow's gunicorn, ``mlflow models serve``, MLServer)
and one load level against one of them, with where the CPU went (client, server process group, each
worker's share).

Split from ``serve_load.py`` so the script keeps the flow (register, start, levels, accuracy, report) and
this module the mechanics.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import requests

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import StackSettings


def start_mlflow_serve(stack: StackSettings, uri: str, port: int, workers: int) -> subprocess.Popen:
    log = (stack.home / "logs" / "mlflow-serve.log").open("ab")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            localstack.HOST,
            "-p",
            str(port),
            "-w",
            str(workers),
        ],
        # mlflow execs ``uvicorn`` through bash: the venv's bin must be on PATH
        env={
            **os.environ,
            **localstack.client_env(stack),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (stack.home / "run").mkdir(parents=True, exist_ok=True)
    (stack.home / "run" / "mlflow-serve.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited {proc.returncode}; see {log.name}")
        try:
            if requests.get(f"http://{localstack.HOST}:{port}/ping", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError("mlflow models serve not healthy in 600 s")


def start_mlserver(
    stack: StackSettings, uri: str, folder: Path, *, workers: int, batch_max: int, batch_wait_s: float
) -> tuple[subprocess.Popen, str]:
    """MLServer's MLflow runtime on ``uri``, installed as docs/serving.md says, with adaptive batching
    (``max_batch_size``/``max_batch_time``) and ``workers`` parallel inference workers; (process, URL)."""
    import json

    from sentiflow.localstack.supervisor import free_port
    from tests.integration.deployment.install_sets import build_mlserver

    bin_dir = build_mlserver(folder / "env")
    models = folder / "models"
    (models / "sentiment").mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "host": localstack.HOST,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
    }
    (models / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": "sentiment",
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": uri},
        "max_batch_size": batch_max,
        "max_batch_time": batch_wait_s,
    }
    (models / "sentiment" / "model-settings.json").write_text(json.dumps(model))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(localstack.client_env(stack), PATH=f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    log = (folder / "mlserver.log").open("ab")
    proc = subprocess.Popen(
        [str(bin_dir / "mlserver"), "start", str(models)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{localstack.HOST}:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlserver exited {proc.returncode}; see {log.name}")
        try:
            if requests.get(f"{url}/v2/models/sentiment/ready", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"mlserver not ready in 600 s; see {log.name}")


def v2_request(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts), 1], "data": texts}]}


def v2_labels(body: dict) -> list[str]:
    return next(output["data"] for output in body["outputs"] if output["name"] == "label")


def predict_labels(body: dict) -> list[str]:
    """Labels of a ``/predict`` answer, or of ``mlflow models serve``'s (the same rows)."""
    return [row["label"] for row in body["predictions"]]


def stop_process(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass(frozen=True)
class ModelServer:
    """One gunicorn model server of the local stack's definition (argv, PID file, health), with extra env."""

    stack: StackSettings
    pid: int

    @classmethod
    def start(cls, stack: StackSettings, env: dict[str, str]) -> ModelServer:
        service = localstack.services(stack)["model-server"]
        return cls(stack, supervisor.start(stack, replace(service, env={**service.env, **env})))

    @property
    def url(self) -> str:
        return self.stack.server_url

    @property
    def token(self) -> str:
        return self.stack.server_token

    def stop(self) -> None:
        supervisor.stop(self.stack, "model-server")


class Target:
    def __init__(
        self,
        name: str,
        url: str,
        wrap,
        pgid: int,
        metrics_url: str | None = None,
        metrics_token: str | None = None,
        labels=predict_labels,
    ) -> None:
        self.name, self.url, self.wrap, self.pgid = name, url, wrap, pgid
        self.metrics_url = metrics_url
        #: /metrics answers only a bearer token (the server's metrics or admin token)
        self.metrics_token = metrics_token
        self.labels = labels  # answer body -> one label per text


def worker_requests(target: Target) -> dict[str, float]:
    """Requests answered so far by each gunicorn worker of a sentiflow server (its ``/metrics``)."""
    if not target.metrics_url:
        return {}
    counts: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {target.metrics_token}"} if target.metrics_token else {}
    for line in requests.get(target.metrics_url, headers=headers, timeout=30).text.splitlines():
        if line.startswith("sentiflow_server_worker_requests_total{"):
            worker = line.split('worker="', 1)[1].split('"', 1)[0]
            counts[worker] = counts.get(worker, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def shares(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {w: after[w] - before.get(w, 0.0) for w in after}
    total = sum(delta.values()) or 1.0
    return {w: round(d / total, 3) for w, d in sorted(delta.items()) if d > 0}


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of one process group (a server)."""
    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                times = proc.cpu_times()
                total += times.user + times.system
        except (psutil.Error, ProcessLookupError):  # gone meanwhile, or not ours to read
            continue
    return total


def run_level(
    target: Target, texts: list[str], *, concurrency: int, n_requests: int, per_request: int
) -> dict:
    latencies: list[float] = []
    statuses: list[int] = []
    versions: set[str] = set()
    lock = threading.Lock()
    local = threading.local()
    counter = iter(range(n_requests))

    def one(i: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = (i * per_request) % (len(texts) - per_request)
        body = target.wrap(texts[start : start + per_request])
        t0 = time.perf_counter()
        try:
            r = session.post(target.url, json=body, timeout=120)
            status = r.status_code
            if status == 200 and target.name.startswith("sentiflow"):
                with lock:
                    versions.add(r.json()["model_version"])
        except requests.RequestException:
            status = -1
        dt = time.perf_counter() - t0
        with lock:
            latencies.append(dt)
            statuses.append(status)

    workers0 = worker_requests(target)
    t0, client_cpu0, server_cpu0 = time.perf_counter(), time.process_time(), group_cpu_s(target.pgid)
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, counter))
    wall = time.perf_counter() - t0
    client_cpu, server_cpu = time.process_time() - client_cpu0, group_cpu_s(target.pgid) - server_cpu0
    worker_share = shares(workers0, worker_requests(target)) if target.metrics_url else None
    latencies.sort()
    errors = sum(1 for s in statuses if not 200 <= s < 300)
    return {
        "server": target.name,
        "concurrency": concurrency,
        "texts_per_request": per_request,
        "requests": n_requests,
        "errors": errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(n_requests / wall, 2),
        "texts_per_s": round(n_requests * per_request / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        # where the 2 cores went: the load generator shares them with the server
        "client_cpu_ms_per_request": round(1000 * client_cpu / n_requests, 2),
        "server_cpu_ms_per_text": round(1000 * server_cpu / (n_requests * per_request), 2),
        "cpu_busy": round((client_cpu + server_cpu) / (wall * (os.cpu_count() or 1)), 2),
        **({"versions_seen": sorted(versions)} if versions else {}),
        # each gunicorn worker's share of the requests: even is 1/workers each
        **({"worker_share": worker_share} if worker_share else {}),
    }
