"""Load benchmark: the sentiflow model server vs ``mlflow models serve``, same registry version, one run.

Starts its own S3 + MLflow on free ports (temp home), registers one model version (the transformer
family on the offline MiniLM by default, or TF-IDF), then serves it twice on 127.0.0.1:

* ``sentiflow[<runtime>]``: gunicorn + Flask (``serving/``), micro-batching on one inference thread per
  worker, one server per ``--runtimes`` entry (``SENTIFLOW_SERVER_RUNTIME``: onnx-int8, onnx, torch);
* ``mlflow``: ``mlflow models serve -m models:/<name>/<version> --env-manager local``;
* ``mlserver[w=N]`` (``--mlserver-workers N ...``): MLServer's MLflow runtime on the same version over the V2
  protocol, installed as docs/serving.md says, adaptive batching on (the same batch size and wait as ours),
  N parallel inference workers.

With ``--model-dir`` (a fine-tuned ``TransformerClassifier``, e.g. the one ``transformer_quality.py``
saves) and ``--accuracy-texts N``, every server also labels N test reviews through its API: accuracy and
agreement with ``mlflow models serve`` show what each runtime costs in quality.

For each load level the two servers run back to back (alternating which goes first) so background
load on a shared machine hits both alike. Levels: single-text requests at concurrency 1, 8, 32 and
32-text batches. Writes ``benchmarks/results/serve_load.json`` and prints a Markdown table.

    .venv/bin/python benchmarks/serve_load.py                 # transformer (MiniLM, max_length 256)
    .venv/bin/python benchmarks/serve_load.py --family tfidf  # quick check of the harness
    .venv/bin/python benchmarks/serve_load.py --model-dir benchmarks/.cache/minilm-imdb-4000 \
        --accuracy-texts 1000 --runtimes onnx-int8 onnx torch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]

from sentiflow.localstack import stack as localstack  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from _common import cpu_flags, machine  # noqa: E402
from _serve_targets import (  # noqa: E402
    ModelServer,
    Target,
    run_level,
    start_mlflow_serve,
    start_mlserver,
    stop_process,
    v2_labels,
    v2_request,
)

SHARED = REPO.parent / "shared"
LABELS = ["negative", "positive"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", choices=["transformer", "tfidf"], default="transformer")
    p.add_argument("--model-path", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--model-dir", default=None, help="a saved fine-tuned TransformerClassifier to serve")
    p.add_argument(
        "--runtimes",
        nargs="+",
        default=["onnx-int8", "torch"],
        choices=["onnx-int8", "onnx", "torch"],
        help="one sentiflow server per runtime; the first is the headline ratio",
    )
    p.add_argument("--accuracy-texts", type=int, default=0, help="labelled test reviews scored per server")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--texts", default=str(SHARED / "data" / "imdb" / "test.parquet"))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, nargs="+", default=[40, 160, 320], help="per concurrency level")
    p.add_argument("--batch-size", type=int, default=32, help="texts per request of the batch level")
    p.add_argument("--batch-concurrency", type=int, default=4)
    p.add_argument("--batch-requests", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="sentiflow gunicorn workers (its default: 2)")
    p.add_argument("--mlflow-workers", type=int, default=1, help="mlflow models serve -w (its default: 1)")
    p.add_argument("--server-batch-max", type=int, default=32, help="SENTIFLOW_SERVER_BATCH_MAX_TEXTS")
    p.add_argument("--server-batch-wait-ms", type=float, default=3.0)
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="back-to-back runs of the c=max single-text level per sentiflow server (run-to-run spread)",
    )
    p.add_argument(
        "--servers", choices=["both", "sentiflow"], default="both", help="skip mlflow models serve"
    )
    p.add_argument(
        "--mlserver-workers", type=int, nargs="*", default=[], help="one MLServer per parallel_workers value"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_load.json"))
    return p.parse_args()


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def load_texts(path: str, n: int = 2000) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(path, columns=["text"])
    return frame["text"].sample(n=min(n, len(frame)), random_state=0).tolist()


def model_labels(args: argparse.Namespace) -> list[str]:
    """The fine-tuned model's own label names (``--model-dir``'s config), else the binary IMDb pair."""
    if not args.model_dir:
        return LABELS
    config = json.loads((Path(args.model_dir) / "config.json").read_text())
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def register(args: argparse.Namespace) -> str:
    import mlflow

    from sentiflow.modeling.base import TextClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    clf: TextClassifier
    if args.family == "transformer":
        from sentiflow.families.transformer.model import TransformerClassifier

        if args.model_dir:
            clf = TransformerClassifier.load(
                Path(args.model_dir), model_labels(args), max_length=args.max_length
            )
        else:
            # An untrained head costs the same per text as a fine-tuned one: speed is what is measured.
            clf = TransformerClassifier.from_pretrained(args.model_path, LABELS, max_length=args.max_length)
    else:
        import pandas as pd

        from sentiflow.families.tfidf.model import TfidfClassifier

        train = pd.read_parquet(SHARED / "data" / "imdb" / "train.parquet").sample(n=5000, random_state=0)
        clf = TfidfClassifier.build(LABELS).fit(train["text"].tolist(), train["label"].tolist())
    settings = MLflowSettings()
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=f"serve-load-{args.family}"):
        info = log_classifier(clf, registered_model_name=settings.registered_model_name)
    return str(info.registered_model_version)


def main() -> int:
    from tests.devserver import release

    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    home = Path(tempfile.mkdtemp(prefix="serve-load-"))
    stack = localstack.stack_on_free_ports(home, start_timeout_s=600)
    mlflow_serve_port = localstack.free_port()
    servers: list[ModelServer] = []
    mlflow_proc = None
    mlservers: list = []
    try:
        localstack.up(stack, ["s3", "mlflow"], with_airflow=False)
        os.environ.update(localstack.client_env(stack))
        from sentiflow.settings.components import MLflowSettings

        version = register(args)
        name = MLflowSettings().registered_model_name
        print(f"registered {name} version {version} ({args.family})", flush=True)
        for runtime in args.runtimes:
            server_stack = stack.model_copy(
                update={"home": home / runtime, "server_port": localstack.free_port()}
            )
            server = ModelServer.start(
                server_stack,
                {  # the identities the stack provisioned under its home; this server's own state folder
                    **localstack.server_env(stack),
                    "SENTIFLOW_SERVER_STATE_DIR": str(server_stack.home / "model-server"),
                    "SENTIFLOW_SERVER_WORKERS": str(args.workers),
                    "SENTIFLOW_SERVER_THREADS": "64",
                    "SENTIFLOW_SERVER_BATCH_MAX_TEXTS": str(args.server_batch_max),
                    "SENTIFLOW_SERVER_BATCH_WAIT_MS": str(args.server_batch_wait_ms),
                    "SENTIFLOW_SERVER_TIMEOUT_S": "600",
                    "SENTIFLOW_SERVER_RUNTIME": runtime,
                    # one client address sends the whole load: its per-client limit would answer 429s
                    "SENTIFLOW_SERVER_PREDICT_RATE_LIMIT": "1000000 per minute",
                },
            )
            servers.append(server)
            release(server.url, version, token=server.token, timeout_s=900)  # the pipeline's alias move
            served = requests.get(f"{server.url}/model", timeout=10).json()
            if args.family == "transformer" and served.get("runtime") != runtime:
                raise RuntimeError(
                    f"server for {runtime} serves through {served.get('runtime')}; see its log"
                )
        if args.servers == "both":
            mlflow_proc = start_mlflow_serve(
                stack, f"models:/{name}/{version}", mlflow_serve_port, args.mlflow_workers
            )
        targets = [
            *(
                Target(
                    f"sentiflow[{runtime}]",
                    f"{server.url}/predict",
                    lambda ts: {"texts": ts},
                    server.pid,
                    metrics_url=f"{server.url}/metrics",
                    metrics_token=server.token,
                )
                for runtime, server in zip(args.runtimes, servers, strict=True)
            ),
        ]
        if mlflow_proc is not None:
            targets.append(
                Target(
                    "mlflow",
                    f"http://{localstack.HOST}:{mlflow_serve_port}/invocations",
                    lambda ts: {"inputs": ts},
                    mlflow_proc.pid,
                )
            )
        for workers in args.mlserver_workers:
            proc, url = start_mlserver(
                stack,
                f"models:/{name}/{version}",
                home / f"mlserver-{workers}",
                workers=workers,
                batch_max=args.server_batch_max,
                batch_wait_s=args.server_batch_wait_ms / 1000,
            )
            mlservers.append(proc)
            targets.append(
                Target(
                    f"mlserver[w={workers}]",
                    f"{url}/v2/models/sentiment/infer",
                    v2_request,
                    proc.pid,
                    labels=v2_labels,
                )
            )
        texts = load_texts(args.texts)
        for t in targets:  # warm both (first requests pay lazy initialisation)
            run_level(t, texts, concurrency=2, n_requests=8, per_request=1)
        levels = [(c, n, 1) for c, n in zip(args.concurrency, args.requests, strict=True)]
        levels.append((args.batch_concurrency, args.batch_requests, args.batch_size))
        results = []
        for i, (c, n, per) in enumerate(levels):
            shift = i % len(targets)  # each level starts with another server
            order = targets[shift:] + targets[:shift]
            for t in order:
                res = run_level(t, texts, concurrency=c, n_requests=n, per_request=per)
                print(json.dumps(res), flush=True)
                results.append(res)

        c_max = max(args.concurrency)
        n_max = args.requests[args.concurrency.index(c_max)]
        spread: dict[str, dict] = {}
        for t in [
            t for t in targets if t.metrics_url
        ]:  # back-to-back repeats: run-to-run spread, worker shares
            runs = [pick_first(results, t.name, c_max)] + [
                run_level(t, texts, concurrency=c_max, n_requests=n_max, per_request=1)
                for _ in range(max(0, args.repeat - 1))
            ]
            rates = [r["requests_per_s"] for r in runs]
            spread[t.name] = {
                "requests_per_s": rates,
                "spread": round((max(rates) - min(rates)) / statistics.median(rates), 3),
                "max_worker_share": [max(r.get("worker_share", {"-": 1.0}).values()) for r in runs],
            }
            print(json.dumps({"server": t.name, **spread[t.name]}), flush=True)

        def pick(server_name: str, c: int, per: int) -> dict:
            return next(
                r
                for r in results
                if r["server"] == server_name and r["concurrency"] == c and r["texts_per_request"] == per
            )

        ours = [t for t in targets if t.metrics_url]
        if mlflow_proc is not None:
            theirs = pick("mlflow", c_max, 1)
            ratios = {
                t.name: round(pick(t.name, c_max, 1)["requests_per_s"] / theirs["requests_per_s"], 2)
                for t in ours
            }
            p99_ratios = {t.name: round(pick(t.name, c_max, 1)["p99_ms"] / theirs["p99_ms"], 2) for t in ours}
        else:
            ratios = p99_ratios = {t.name: None for t in ours}
        mlserver_rates = {
            t.name: pick(t.name, c_max, 1)["requests_per_s"] for t in targets if t.name.startswith("mlserver")
        }
        best_mlserver = max(mlserver_rates, key=lambda n: mlserver_rates[n]) if mlserver_rates else None
        vs_mlserver = (
            {
                t.name: round(pick(t.name, c_max, 1)["requests_per_s"] / mlserver_rates[best_mlserver], 2)
                for t in ours
            }
            if best_mlserver
            else None
        )
        headline = targets[0].name
        errors = {t.name: sum(r["errors"] for r in results if r["server"] == t.name) for t in targets}
        quality = score_accuracy(targets, args) if args.accuracy_texts else None
        summary = {
            "benchmark": "serve_load",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {
                **machine(),
                "cpu_flags": [f for f in cpu_flags() if f.startswith(("avx", "amx")) or f == "fma"],
                "onnxruntime": onnxruntime_version(),
                "note": "the load generator shares the server's cores",
            },
            "model": {"name": name, "version": version, "family": args.family, "max_length": args.max_length},
            "config": {k: v for k, v in vars(args).items() if k != "out"},
            "headline_server": headline,
            "throughput_ratio_c32": ratios[headline],
            "p99_ratio_c32": p99_ratios[headline],
            "throughput_ratio_c32_by_server": ratios,
            "best_mlserver_c32": best_mlserver,
            "throughput_ratio_vs_best_mlserver_c32": vs_mlserver,
            "p99_ratio_c32_by_server": p99_ratios,
            "errors": errors,
            "quality": quality,
            "run_to_run_c32": spread,
            "results": results,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        print(markdown(summary))
        return 0 if sum(errors.values()) == 0 else 1
    finally:
        if mlflow_proc is not None:
            stop_process(mlflow_proc)
        for proc in mlservers:
            stop_process(proc)
        for server in servers:
            server.stop()
        localstack.down(stack, ["s3", "mlflow"])


def pick_first(results: list[dict], server_name: str, c: int) -> dict:
    return next(
        r
        for r in results
        if r["server"] == server_name and r["concurrency"] == c and r["texts_per_request"] == 1
    )


def score_accuracy(targets: list[Target], args: argparse.Namespace) -> dict:
    """Each server labels the same labelled test reviews (32 per request): accuracy and agreement."""
    import pandas as pd

    frame = pd.read_parquet(args.texts).sample(n=args.accuracy_texts, random_state=1)
    texts, truth = frame["text"].tolist(), frame["label"].to_numpy()
    names = model_labels(args)
    labels: dict[str, list[str]] = {}
    for target in targets:
        out: list[str] = []
        for start in range(0, len(texts), 32):
            r = requests.post(target.url, json=target.wrap(texts[start : start + 32]), timeout=600)
            r.raise_for_status()
            out += target.labels(r.json())
        labels[target.name] = out
    reference = labels.get("mlflow") or next(iter(labels.values()))
    return {
        "texts": len(texts),
        "by_server": {
            name: {
                "accuracy": round(float(np.mean(np.array([names.index(v) for v in got]) == truth)), 4),
                "agreement_with_mlflow": round(float(np.mean(np.array(got) == np.array(reference))), 4),
            }
            for name, got in labels.items()
        },
    }


def markdown(summary: dict) -> str:
    rows = [
        "| load | server | req/s | texts/s | p50 ms | p99 ms | errors | server CPU ms/text "
        "| client CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["results"]:
        per = r["texts_per_request"]
        load = f"c={r['concurrency']}, {per} text{'s' if per > 1 else ''}/req"
        rows.append(
            f"| {load} | {r['server']} | {r['requests_per_s']} | {r['texts_per_s']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['errors']} | {r['server_cpu_ms_per_text']} | "
            f"{r['client_cpu_ms_per_request']} |"
        )
    rows.append("")
    rows.append(
        f"throughput ratio at c=32 ({summary['headline_server']} / mlflow): "
        f"**{summary['throughput_ratio_c32']}x**, p99 ratio {summary['p99_ratio_c32']}; all servers: "
        f"{summary['throughput_ratio_c32_by_server']}; errors {summary['errors']}"
    )
    for name, run in (summary.get("run_to_run_c32") or {}).items():
        rows.append(
            f"{name}, c=32 back to back: {run['requests_per_s']} req/s (spread {run['spread']:.0%}), "
            f"busiest worker's share {run['max_worker_share']}"
        )
    if summary.get("quality"):
        rows.append(
            f"quality on {summary['quality']['texts']} test reviews: {summary['quality']['by_server']}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
