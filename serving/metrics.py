"""Prometheus metrics of the model server (prometheus_client), defined once here.

Under gunicorn each worker is its own process: ``serving/gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker imports this module, and ``/metrics`` then aggregates every
live worker's values with ``MultiProcessCollector``. Without that variable (tests, ``flask run``) the
process-local default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "sentiflow_server"

REQUESTS = Counter(
    f"{PREFIX}_requests",
    "HTTP requests by endpoint, method and status code.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    f"{PREFIX}_request_latency_seconds",
    "Request latency by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PREDICTIONS = Counter(f"{PREFIX}_predictions", "Texts classified, by predicted label.", ["label"])
BATCH_TEXTS = Histogram(
    f"{PREFIX}_batch_texts",
    "Texts per forward pass of the micro-batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_REFUSED = Counter(
    f"{PREFIX}_batch_queue_refused",
    "Prediction work refused or dropped by the batch queue: texts (requests refused by the queue's text "
    "bound, a 503), client (refused by one client's share of it, a 503), threads (refused because too "
    "many requests already wait in the worker, a 503), timeout_dropped (texts of a request that stopped "
    "waiting, dropped unrun).",
    ["reason"],
)
FEEDBACK = Counter(f"{PREFIX}_feedback", "Feedback rows stored, by outcome (correct or wrong).", ["outcome"])
MODEL_VERSION = Gauge(
    f"{PREFIX}_model_version",
    "Registry version of the model this worker serves (0 = none loaded).",
    multiprocess_mode="liveall",
)
MODEL_RUNTIME = Gauge(
    f"{PREFIX}_model_runtime",
    "1 for the runtime this worker's model answers through (torch, onnx, onnx-int8, scikit-learn) and the "
    "one the server is configured for; they differ when the configured runtime cannot serve the version "
    "(GET /model's runtime_fallback says why).",
    ["runtime", "configured"],
    multiprocess_mode="liveall",
)
DEPLOYS = Counter(f"{PREFIX}_deploys", "Model loads by result (success or failure).", ["result"])
REGISTRY_REQUESTS = Counter(
    f"{PREFIX}_registry_requests",
    "Registry calls by kind: alias (the followed alias), version (a version record), load (a download), "
    "models and versions (the web page's lists).",
    ["call"],
)
#: Requests answered per worker process (``serve_load`` reads each worker's share of the load).
WORKER_REQUESTS = Counter(f"{PREFIX}_worker_requests", "HTTP requests answered by this worker.", ["worker"])


def exposition() -> tuple[bytes, str]:
    """The text format for ``/metrics``: all live workers' values under gunicorn, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
