"""The model server's settings (``SENTIFLOW_SERVER_*``): limits, tuning knobs and its shared database.

Its own module because it is the largest settings class and the one the server's operators read; the
clients (the DAG's deploy and check steps, its feedback export) read the same object for ``url``,
``admin_token`` and ``reviewer_token``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from sentiflow.settings.components import settings_config


class ServerSettings(BaseSettings):
    """The Flask model server (``serving/``) and its clients. Env: ``SENTIFLOW_SERVER_*``.

    The local stack sets ``URL``, ``ADMIN_TOKEN``, ``REVIEWER_TOKEN`` and ``STATE_DIR``; the rest are limits
    and tuning knobs.
    """

    model_config = settings_config("SERVER_")

    url: str = Field(default="http://127.0.0.1:8000", description="Base URL clients (the DAG) call.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for /deploy and /deploy/status (releases), and for the details of "
        "/replicas, /ready and /ui/api/* (host names, load errors, run ids); unset = the admin endpoints "
        "refuse. It does not read or review feedback (reviewer_token does).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token Prometheus sends to scrape /metrics (the admin token works too); unset = "
        "only the admin token may read /metrics.",
    )
    reviewer_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of feedback reviewers: the review queue (/feedback/review, its web "
        "view), /feedback/export and /feedback/import; the pipeline's training export uses it too. Unset = "
        "those refuse and no feedback is ever reviewed, so none trains.",
    )
    auto_accept_min_clients: int = Field(
        default=0,
        ge=0,
        description="Auto-accept: a pending flag is accepted without a reviewer once this many distinct "
        "clients sent the same text (ignoring case and surrounding spaces) with the same label, and that "
        "label is not the one the model predicted. 0 = off (every flag waits for a reviewer).",
    )
    state_dir: Path = Field(
        default=Path(".stack/model-server"),
        description="This replica's own files: downloaded versions, ONNX cache, Prometheus files, the "
        "default SQLite database.",
    )
    feedback_db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the server's shared database (feedback, replica rows); "
        "default SQLite in state_dir. Several replicas need one shared database (Postgres).",
    )
    signing_public_keys: list[str] = Field(
        default_factory=list,
        description="JSON list of public keys (PEM paths or PEM texts) a version's signature must verify "
        "with before it is loaded; several for key rotation (sentiflow.security.signing).",
    )
    allow_unsigned_models: bool = Field(
        default=False,
        description="Development only: with no signing_public_keys, load versions without verifying a "
        "signature (logged as a warning). Off, a server without keys loads nothing; SENTIFLOW_ENV=production "
        "refuses to start with it on.",
    )
    max_texts: int = Field(default=256, description="Most texts in one /predict call.")
    max_text_chars: int = Field(default=10_000, description="Most characters in one text.")
    max_body_bytes: int = Field(default=1024 * 1024, description="Largest request body accepted.")
    batch_max_texts: int = Field(
        default=64, description="Micro-batch: most texts of concurrent requests gathered into one call."
    )
    batch_max_tokens: int | None = Field(
        default=512,
        gt=0,
        description="On CPU, most padded tokens (texts x longest) in one forward pass of a transformer: a "
        "micro-batch runs as length-sorted chunks of this size. Unset: batch_max_texts only.",
    )
    batch_max_chars: int | None = Field(
        default=32_000,
        gt=0,
        description="Micro-batch: most characters gathered into one call; a larger request runs as pieces, "
        "smallest first, so a short request waits for one piece, not for another client's whole request. "
        "Unset: batch_max_texts only.",
    )
    batch_queue_max_texts: int = Field(
        default=1024,
        ge=1,
        description="Most texts waiting in a worker's batch queue; a /predict that would pass it answers "
        "503 with Retry-After at once (an empty queue takes any request within max_texts).",
    )
    batch_queue_max_client_texts: int = Field(
        default=256,
        ge=1,
        description="Most texts of one client (its rate-limit key) waiting in a worker's batch queue: one "
        "client cannot fill the queue for the others; beyond, a 503 with Retry-After (a client with "
        "nothing queued may send any request within max_texts).",
    )
    predict_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a /predict waits for its prediction; then it answers 503 and its work, if "
        "still queued, is dropped unrun.",
    )
    health_threads: int = Field(
        default=2,
        ge=1,
        description="Request threads per worker that never wait on a prediction: /predict may occupy at "
        "most threads - health_threads (beyond, a 503 with Retry-After), so /health, /ready and the rest "
        "answer under any flood (at least one thread always may predict).",
    )
    overload_retry_after_s: int = Field(
        default=1,
        ge=1,
        description="Retry-After (seconds) of a /predict refused because the batch queue is full.",
    )
    batch_wait_ms: float = Field(
        default=2.0, description="Micro-batch: how long the inference thread waits to fill a batch."
    )
    reload_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often each replica reads the followed alias from the registry (one request per "
        "interval per replica, whatever the worker count) and each worker reports itself.",
    )
    follow_alias: str | None = Field(
        default=None,
        description="Registry alias every worker of every replica serves; default the champion alias.",
    )
    replica_id: str | None = Field(
        default=None,
        description="This replica's id in the shared database; default host name + a random suffix.",
    )
    replica_ttl_s: float = Field(
        default=10.0,
        gt=0,
        description="A replica not seen for this long is not live (GET /replicas, the release's wait).",
    )
    load_retry_initial_s: float = Field(
        default=1.0, gt=0, description="First retry delay after a failed model load; doubles per failure."
    )
    load_retry_max_s: float = Field(default=30.0, gt=0, description="Longest delay between load retries.")
    airflow_url: str | None = Field(
        default=None,
        description="Base URL of Airflow's API server (its REST API v2 and UI), e.g. http://airflow:8080; "
        "POST /deploy triggers the release DAG there. Unset = /deploy answers 503 naming this setting.",
    )
    airflow_username: str | None = Field(
        default=None,
        description="Airflow user POST /deploy logs in as (POST /auth/token) to trigger and read release "
        "runs.",
    )
    airflow_password: SecretStr | None = Field(default=None, description="Password of that Airflow user.")
    airflow_timeout_s: float = Field(
        default=10.0, gt=0, description="Per request to Airflow's API; beyond it /deploy answers 503."
    )
    deploy_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest POST /deploy?wait=true waits for the release run to end (the wait's cap).",
    )
    schema_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="A worker that finds the shared database behind the migrations' head waits this long "
        "for `python -m serving.store.migrate upgrade`, then fails to boot naming that command.",
    )
    workers: int = Field(default=2, description="gunicorn worker processes.")
    threads: int = Field(default=16, description="gunicorn threads per worker (requests; inference is one).")
    timeout_s: int = Field(default=300, description="gunicorn worker timeout; covers a slow model load.")
    keepalive_s: int = Field(
        default=75,
        gt=0,
        description="gunicorn keep-alive: seconds an idle client connection stays open. Must outlive the "
        "proxy's upstream idle timeout (nginx/ingress-nginx 60 s, AWS ALB 60 s), or the proxy reuses a "
        "connection the server is closing (a 502).",
    )
    db_pool_size: int = Field(
        default=2,
        ge=1,
        description="Connections each worker's SQLAlchemy pool keeps open to the shared database (one pool "
        "per worker for feedback and replica rows); size replicas x workers x (pool + overflow) "
        "under the database's max_connections (docs/deployment.md).",
    )
    db_max_overflow: int = Field(
        default=3,
        ge=0,
        description="Extra connections a pool may open above db_pool_size under load, closed when returned.",
    )
    reuse_port: bool = Field(
        default=True,
        description="Each gunicorn worker listens on its own SO_REUSEPORT socket, so the kernel spreads "
        "connections evenly over the workers (a shared socket lets keep-alive connections pile on one).",
    )
    torch_threads: int | None = Field(
        default=None,
        description="torch/ONNX intra-op threads per worker; default the container's CPUs (its cgroup CPU "
        "quota, else the CPUs it may run on) // workers.",
    )
    preload_libraries: bool = Field(
        default=True,
        description="Import the model libraries (MLflow's pyfunc, torch, transformers, ONNX Runtime) once "
        "in the gunicorn master: forked workers share them; a first transformer load imports nothing.",
    )
    runtime: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="onnx-int8",
        description="Forward pass of transformer models on CPU: torch, onnx (ONNX Runtime, same fp32 "
        "numbers) or onnx-int8 (dynamic int8 quantization, fastest; the file shipped with the version; on "
        "x86 only with AVX-512 VNNI); falls back to torch if it cannot serve, and GET /model says why.",
    )
    runtime_max_prob_diff: float = Field(
        default=0.05,
        gt=0,
        description="An ONNX model whose probabilities differ from PyTorch's by more on check texts is "
        "not served (PyTorch is).",
    )
    registry_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Timeout of each MLflow registry request (MLFLOW_HTTP_REQUEST_TIMEOUT).",
    )
    registry_max_retries: int = Field(
        default=2,
        ge=0,
        description="Retries of a failed MLflow request (MLFLOW_HTTP_REQUEST_MAX_RETRIES); MLflow's own "
        "default backs off for minutes, so a deploy with the registry down would hang instead of a 503.",
    )
    startup_wait_s: float = Field(
        default=120.0, description="A worker waits this long for its startup load before taking requests."
    )
    prediction_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs each prediction_id (feedback must cite one); unset = a random key "
        "kept in state_dir. Replicas behind one load balancer must share it.",
    )
    predict_rate_limit: str = Field(
        default="300 per minute",
        description="Most POST /predict calls per client address, counted in rate_limit_storage_uri "
        "(Flask-Limiter syntax); beyond it a 429 with Retry-After.",
    )
    ui_api_rate_limit: str = Field(
        default="60 per minute",
        description="Most GET /ui/api/* calls per client address (each costs registry or database work), "
        "counted like predict_rate_limit.",
    )
    feedback_rate_limit: str = Field(
        default="60 per minute",
        description="Most POST /feedback calls per client address (Flask-Limiter syntax, e.g. '10/second').",
    )
    rate_limit_storage_uri: str = Field(
        default="memory://",
        description="Where rate-limit counters live (limits' URI): memory:// counts per worker, "
        "redis://host:6379 shares one count among every worker of every replica.",
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=8,
        description="Proxies in front of the server that append to X-Forwarded-For (nginx, an ingress): the "
        "client key of the rate limit is the address that many hops back; 0 = the peer address.",
    )

    @property
    def resolved_feedback_db_url(self) -> str:
        return self.feedback_db_url or f"sqlite:///{self.state_dir.resolve() / 'feedback.db'}"
