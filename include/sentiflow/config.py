"""Typed settings, one object per component, all read from ``SENTIFLOW_*`` environment variables.

Every default points at the embedded local stack (``make up``), so a fresh checkout works with no
configuration; production sets the same names (docker-compose ``.env``, Kubernetes Secrets).
Settings are read on each call (no module-level cache) so that tests and Airflow tasks can change the
environment between calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SENTIFLOW_"

#: The Hub names are the product's defaults; offline machines override them (see README).
DEFAULT_MODEL_NAME = "prajjwal1/bert-tiny"
DEFAULT_DATASET = "imdb"


def _config(component: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{ENV_PREFIX}{component}", extra="ignore", populate_by_name=True)


class RuntimeEnvironment(BaseSettings):
    """Where this runs. Env: ``SENTIFLOW_ENV``; ``production`` (compose, k8s) refuses placeholder secrets."""

    model_config = _config()

    env: Literal["development", "production"] = Field(
        default="development",
        description="production: the model server refuses to start with an empty or placeholder "
        "(change-me...) admin token, prediction secret or drift hash key.",
    )


class S3Settings(BaseSettings):
    """Object store (SeaweedFS locally, MinIO or AWS S3 in production). Env: ``SENTIFLOW_S3_*``."""

    model_config = _config("S3_")

    endpoint_url: str | None = Field(
        default="http://127.0.0.1:8333", description="S3 API endpoint; empty for AWS S3 itself."
    )
    bucket: str = Field(default="sentiflow", description="Bucket for datasets, reports and MLflow artifacts.")
    access_key_id: str = Field(default="sentiflow", description="Access key id.")
    secret_access_key: SecretStr = Field(default=SecretStr("sentiflow-secret"), description="Secret key.")
    region: str = Field(default="us-east-1", description="Region name (any value for SeaweedFS/MinIO).")
    datasets_prefix: str = Field(
        default="datasets", description="Key prefix under which snapshots are written."
    )
    connect_timeout_s: float = Field(
        default=3.0, description="Connect timeout; an unreachable store fails fast."
    )
    max_attempts: int = Field(default=3, description="botocore retry attempts for transient errors.")

    def boto3_kwargs(self) -> dict[str, object]:
        """Arguments for ``boto3.client("s3", ...)``; also what MLflow and pandas need."""
        return {
            "endpoint_url": self.endpoint_url or None,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key.get_secret_value(),
            "region_name": self.region,
        }


class DataSettings(BaseSettings):
    """Snapshot part and batch sizes of the data steps. Env: ``SENTIFLOW_DATA_*``.

    Memory of collect and clean grows with ``batch_rows`` (rows held at once), never with a split's size;
    ``part_rows`` bounds each parquet part, hence each mapped clean task and each object uploaded.
    """

    model_config = _config("DATA_")

    part_rows: int = Field(
        default=250_000,
        ge=1,
        description="Rows per parquet part of a snapshot split (one mapped clean task each).",
    )
    batch_rows: int = Field(
        default=50_000, ge=1, description="Rows per record batch read, cleaned and written at once."
    )
    exact_rows: int = Field(
        default=1_000_000,
        ge=0,
        description="Sources up to this many rows get exact, stratified split and sample sizes (17 bytes "
        "a row held); larger ones are sampled by fraction with no per-row state.",
    )
    spool_mib: int = Field(
        default=32,
        ge=1,
        description="A part being written stays in memory up to this size, then spills to disk.",
    )


class MLflowSettings(BaseSettings):
    """Tracking server and registry. Env: ``SENTIFLOW_MLFLOW_*``."""

    model_config = _config("MLFLOW_")

    tracking_uri: str = Field(default="http://127.0.0.1:5000", description="MLflow tracking server URI.")
    experiment_name: str = Field(default="sentiflow", description="The pipeline's one MLflow experiment.")
    registered_model_name: str = Field(default="sentiflow-sentiment", description="The one registered model.")
    champion_alias: str = Field(default="champion", description="Alias of the version that is served.")
    previous_alias: str = Field(default="previous", description="Alias of the version before, for rollback.")
    artifacts_prefix: str = Field(
        default="mlflow-artifacts", description="Key prefix in the S3 bucket for proxied MLflow artifacts."
    )
    username: str | None = Field(
        default=None,
        description="MLflow basic-auth user of this component (the `sentiflow_mlflow` connection's login); "
        "unset = MLflow's own MLFLOW_TRACKING_USERNAME/PASSWORD.",
    )
    password: SecretStr | None = Field(default=None, description="Password of that MLflow user.")


class PipelineDefaults(BaseSettings):
    """Defaults the pipeline uses when a trigger does not say. Env: ``SENTIFLOW_DEFAULT_*``."""

    model_config = _config("DEFAULT_")

    model_name: str = Field(
        default=DEFAULT_MODEL_NAME, description="Pretrained model: Hub name, path or s3://."
    )
    dataset: str = Field(default=DEFAULT_DATASET, description="Dataset: Hub name, local path or s3:// URI.")


def export_s3_env_for_mlflow(s3: S3Settings) -> dict[str, str]:
    """The environment MLflow's and boto3's default credential chain read, derived from our settings.

    MLflow clients that upload artifacts directly (not through the proxy) and the MLflow server itself
    read these names; we derive them instead of asking users to set them twice.
    """
    env = {
        "AWS_ACCESS_KEY_ID": s3.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        "AWS_DEFAULT_REGION": s3.region,
    }
    if s3.endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
    return env


class ServerSettings(BaseSettings):
    """The Flask model server (``serving/``) and its clients. Env: ``SENTIFLOW_SERVER_*``.

    The local stack sets ``URL``, ``ADMIN_TOKEN`` and ``STATE_DIR``; the rest are limits and tuning knobs.
    """

    model_config = _config("SERVER_")

    url: str = Field(default="http://127.0.0.1:8000", description="Base URL clients (the DAG) call.")
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for /deploy and /feedback/export; unset = those refuse."
    )
    state_dir: Path = Field(
        default=Path(".stack/model-server"),
        description="This replica's own files: ONNX cache, Prometheus files, the default SQLite database.",
    )
    feedback_db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the server's shared database (feedback, replicas, deployments); "
        "default SQLite in state_dir. Several replicas need one shared database (Postgres).",
    )
    deploy_mlflow_username: str | None = Field(
        default=None,
        description="MLflow user that POST /deploy and the page's Deploy button move the alias as (MANAGE on "
        "the served model only); unset = /deploy answers 403: deploys go through the pipeline.",
    )
    deploy_mlflow_password: SecretStr | None = Field(default=None, description="Password of that user.")
    signing_public_keys: list[str] = Field(
        default_factory=list,
        description="JSON list of public keys (PEM paths or PEM texts) a version's signature must verify "
        "with before it is loaded; several for key rotation (sentiflow.signing).",
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
        description="A replica not seen for this long is not live (GET /replicas, deploys).",
    )
    load_retry_initial_s: float = Field(
        default=1.0, gt=0, description="First retry delay after a failed model load; doubles per failure."
    )
    load_retry_max_s: float = Field(default=30.0, gt=0, description="Longest delay between load retries.")
    deploy_timeout_s: float = Field(
        default=600.0, description="Longest a deploy may take until every live replica serves the version."
    )
    deploy_lease_s: float = Field(
        default=15.0,
        gt=0,
        description="A deployment's watcher renews its lease in the shared database this long ahead; when "
        "it dies (its pod killed), a live replica takes the expired lease over and finishes the deployment.",
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
        description="Connections each SQLAlchemy pool keeps open to the shared database (two pools per "
        "worker: feedback and replicas); size replicas x workers x 2 x (pool + overflow) under the "
        "database's max_connections (docs/deployment.md).",
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
        "numbers) or onnx-int8 (dynamic int8 quantization, fastest); falls back to torch if it cannot build.",
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


class AlertSettings(BaseSettings):
    """Alerts on bad predictions and on drift (issue 7). Env: ``SENTIFLOW_ALERT_*``.

    One alert per window: at least ``wrong_threshold`` wrong flags within ``window_s`` seconds raise one
    alert, then the alerter stays quiet for ``window_s`` seconds however many more flags arrive.
    """

    model_config = _config("ALERT_")

    wrong_threshold: int = Field(default=3, ge=1, description="Wrong flags within the window that alert.")
    window_s: float = Field(default=300.0, gt=0, description="Sliding window (seconds) for wrong flags.")
    webhook_url: str | None = Field(
        default=None, description="URL that receives each alert as a JSON POST; unset = log only."
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one webhook POST.")
    webhook_max_attempts: int = Field(
        default=5, ge=1, description="POST attempts before an alert is dropped."
    )
    webhook_backoff_s: float = Field(
        default=1.0, ge=0, description="First retry delay; doubles per attempt (with jitter)."
    )
    webhook_queue_size: int = Field(
        default=100,
        ge=1,
        description="Alerts waiting for delivery; beyond it new alerts are dropped (logged).",
    )
    max_texts_in_alert: int = Field(default=10, ge=0, description="Flagged texts quoted in one alert.")
    max_text_chars_in_alert: int = Field(default=200, ge=0, description="Each quoted text is cut to this.")


class DriftSettings(BaseSettings):
    """Production sample for drift, and the drift report's thresholds. Env: ``SENTIFLOW_DRIFT_*``.

    By default the server keeps no raw text: each sampled prediction stores its label, its length and keyed
    hashes of its tokens (enough for length PSI and out-of-vocabulary rate). ``log_raw_text`` opts in.
    """

    model_config = _config("DRIFT_")

    sample_enabled: bool = Field(default=True, description="Keep a sample of production predictions.")
    sample_rate: float = Field(default=1.0, ge=0, le=1, description="Fraction of predictions sampled.")
    log_raw_text: bool = Field(default=False, description="Also keep the raw text (privacy: off by default).")
    hash_key: SecretStr = Field(
        default=SecretStr("sentiflow-drift"),
        description="Key for the token hashes; set a secret one in production so hashes cannot be reversed.",
    )
    max_tokens_per_text: int = Field(default=512, ge=1, description="Token hashes kept per text.")
    buffer_max_rows: int = Field(
        default=10_000, ge=1, description="In-memory bound per worker; the oldest rows go first when full."
    )
    flush_rows: int = Field(default=1_000, ge=1, description="Flush to S3 when this many rows wait.")
    flush_interval_s: float = Field(default=60.0, gt=0, description="Flush to S3 at least this often.")
    samples_prefix: str = Field(default="production-samples", description="S3 key prefix of the sample.")
    reports_prefix: str = Field(default="reports/drift", description="S3 key prefix of drift reports.")
    psi_threshold: float = Field(
        default=0.2, ge=0, description="Text-length or label PSI above this raises a drift alert."
    )
    length_bins: int = Field(default=10, ge=2, description="Quantile bins of the text-length PSI.")
    vocab_min_count: int = Field(
        default=2, ge=1, description="A training token enters the vocabulary from this many occurrences."
    )


class SigningSettings(BaseSettings):
    """The pipeline's model-signing key (issue 20). Env: ``SENTIFLOW_SIGNING_*``. Only the pipeline has it."""

    model_config = _config("SIGNING_")

    private_key_path: Path | None = Field(
        default=None, description="PEM file of the ECDSA private key that signs every registered version."
    )
    private_key: SecretStr | None = Field(
        default=None, description="The same key as PEM text (from a Kubernetes Secret); wins over the path."
    )

    def key(self) -> str | Path | None:
        """PEM text or a path, whichever is set; None when the pipeline cannot sign."""
        if self.private_key is not None and self.private_key.get_secret_value().strip():
            return self.private_key.get_secret_value()
        return self.private_key_path


class TrainingSettings(BaseSettings):
    """The training entrypoint's environment. Env: ``SENTIFLOW_TRAIN_*``."""

    model_config = _config("TRAIN_")

    xcom_dir: str = Field(
        default="/airflow/xcom", description="KubernetesPodOperator's XCom folder; return.json goes there."
    )
    git_commit: str | None = Field(
        default=None, description="Commit the code was built from (images set it); else `git rev-parse`."
    )
    tracking_timeout_s: float = Field(
        default=5.0, description="Seconds to wait for the MLflow server's health check before failing."
    )
