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


def settings_config(component: str = "") -> SettingsConfigDict:
    """Each component's settings class reads ``SENTIFLOW_<COMPONENT>*`` and ignores other variables."""
    return SettingsConfigDict(env_prefix=f"{ENV_PREFIX}{component}", extra="ignore", populate_by_name=True)


class RuntimeEnvironment(BaseSettings):
    """Where this runs. Env: ``SENTIFLOW_ENV``; ``production`` (compose, k8s) refuses placeholder secrets."""

    model_config = settings_config()

    env: Literal["development", "production"] = Field(
        default="development",
        description="production: every component refuses to start with an empty or placeholder "
        "(change-me...) credential, and the model server and Airflow without public keys or with "
        "SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS on (sentiflow.security.credentials_check).",
    )


class S3Settings(BaseSettings):
    """Object store (SeaweedFS locally and in compose, or AWS S3). Env: ``SENTIFLOW_S3_*``."""

    model_config = settings_config("S3_")

    endpoint_url: str | None = Field(
        default="http://127.0.0.1:8333", description="S3 API endpoint; empty for AWS S3 itself."
    )
    bucket: str = Field(default="sentiflow", description="Bucket for datasets, reports and MLflow artifacts.")
    access_key_id: str = Field(default="sentiflow", description="Access key id.")
    secret_access_key: SecretStr = Field(default=SecretStr("sentiflow-secret"), description="Secret key.")
    region: str = Field(default="us-east-1", description="Region name (any value for SeaweedFS).")
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

    model_config = settings_config("DATA_")

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

    model_config = settings_config("MLFLOW_")

    tracking_uri: str = Field(default="http://127.0.0.1:5000", description="MLflow tracking server URI.")
    experiment_name: str = Field(default="sentiflow", description="The pipeline's one MLflow experiment.")
    registered_model_name: str = Field(default="sentiflow-sentiment", description="The one registered model.")
    champion_alias: str = Field(default="champion", description="Alias of the version that is served.")
    previous_alias: str = Field(default="previous", description="Alias of the version before, for rollback.")
    candidate_alias: str = Field(
        default="candidate",
        description="Alias of the version a release is about to promote: replicas stage it (download, "
        "verify, warm up) without serving it, so the champion's move is fast.",
    )
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

    model_config = settings_config("DEFAULT_")

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


class AlertSettings(BaseSettings):
    """Alerts on bad predictions and on drift. Env: ``SENTIFLOW_ALERT_*``.

    One alert per window: at least ``wrong_threshold`` wrong flags within ``window_s`` seconds raise one
    alert, then the alerter stays quiet for ``window_s`` seconds however many more flags arrive.
    """

    model_config = settings_config("ALERT_")

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

    model_config = settings_config("DRIFT_")

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
    """The pipeline's model-signing key. Env: ``SENTIFLOW_SIGNING_*``. Only the pipeline has it."""

    model_config = settings_config("SIGNING_")

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

    model_config = settings_config("TRAIN_")

    xcom_dir: str = Field(
        default="/airflow/xcom", description="KubernetesPodOperator's XCom folder; return.json goes there."
    )
    git_commit: str | None = Field(
        default=None, description="Commit the code was built from (images set it); else `git rev-parse`."
    )
    tracking_timeout_s: float = Field(
        default=5.0, description="Seconds to wait for the MLflow server's health check before failing."
    )
    family_packages: list[str] = Field(
        default_factory=list,
        description="Packages beside sentiflow.families whose folders are model families too (a JSON list).",
    )
