"""Settings of the pipeline DAGs and the trainer pod: ``SENTIFLOW_PIPELINE_*``, ``SENTIFLOW_TRAINER_POD_*``.

They live next to the pipeline code (not in ``sentiflow.settings.components``) because only the DAGs read
them; the names follow the same ``SENTIFLOW_`` convention, so a deployment sets them like every other setting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentiflow.settings.components import ENV_PREFIX


class PipelineSettings(BaseSettings):
    """Connection ids and limits of the pipeline tasks. Env: ``SENTIFLOW_PIPELINE_*``."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}PIPELINE_", extra="ignore")

    s3_conn_id: str = Field(default="sentiflow_s3", description="Airflow aws connection of the object store.")
    mlflow_conn_id: str = Field(default="sentiflow_mlflow", description="Airflow http connection of MLflow.")
    server_conn_id: str = Field(
        default="sentiflow_model_server",
        description="Airflow http connection of the model server (token = password).",
    )
    selection_scope: Literal["this_run", "all_versions"] = Field(
        default="this_run", description="Default scope of select_best: this run's versions, or every version."
    )
    deploy_timeout_s: float = Field(
        default=600.0, description="Longest wait for the server to serve a version."
    )
    stage_timeout_s: float = Field(
        default=300.0,
        description="Longest wait for every replica to stage the candidate before its promotion; past it the "
        "release promotes anyway.",
    )
    reports_prefix: str = Field(default="reports", description="S3 key prefix of inference-check reports.")
    local_train_timeout_s: float = Field(
        default=6 * 3600, description="Timeout of a local training subprocess."
    )
    train_backend: Literal["kubernetes", "local"] = Field(
        default="kubernetes",
        description="Default of the DAGs' train_backend param. The compose stack and the Airflow image "
        "export it (kubernetes when a kubeconfig is mounted, else local), so a scheduled run trains "
        "where this deployment can; a trigger may still override it.",
    )
    use_feedback: bool = Field(
        default=True,
        description="Default of sentiment_pipeline's use_feedback param (merge user feedback into the "
        "training split); on, so the weekly schedule retrains with it.",
    )
    feedback_max_fraction: float = Field(
        default=0.1,
        ge=0,
        description="Default of the feedback_max_fraction param: most feedback rows added per row of the "
        "training split (0.1 = at most 10%), so feedback can never outweigh the dataset.",
    )


class TrainerPodSettings(BaseSettings):
    """How the GPU training pod is built. Env: ``SENTIFLOW_TRAINER_POD_*`` (JSON for dicts and lists)."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}TRAINER_POD_", extra="ignore")

    image: str = Field(
        default="sentiflow/trainer:0.1.0",
        description="Trainer image, built from docker/trainer.Dockerfile (compose tags it the same way).",
    )
    image_pull_policy: str = Field(default="IfNotPresent")
    namespace: str = Field(
        default="sentiflow-training", description="Namespace of the pod (its own: no rights over serving)."
    )
    kubernetes_conn_id: str = Field(
        default="kubernetes_default", description="Airflow kubernetes connection."
    )
    in_cluster: bool | None = Field(default=None, description="None: the connection decides.")
    service_account_name: str | None = Field(default=None)
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of the GPU.")
    gpu_count: int = Field(
        default=1,
        ge=0,
        description="GPUs per training pod (0 trains on CPU); above 1 the pod runs torchrun with one DDP "
        "process per GPU and sets the run's gpus parameter.",
    )
    shm_size: str = Field(
        default="2Gi",
        description="Size of the pod's memory-backed /dev/shm (data-loader workers, NCCL between GPUs).",
    )
    cpu_request: str = Field(default="2")
    memory_request: str = Field(default="8Gi")
    memory_limit: str = Field(default="24Gi")
    node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}, description="Node labels the pod needs."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Tolerations (Kubernetes V1Toleration fields, snake_case or camelCase).",
    )
    startup_timeout_seconds: int = Field(default=600, description="Image pull + container start budget.")
    schedule_timeout_seconds: int = Field(
        default=1800, description="How long the pod may wait for a GPU node."
    )
    execution_timeout_s: float = Field(default=6 * 3600, description="Task timeout of the training pod.")
    secret_name: str | None = Field(
        default=None,
        description="Kubernetes Secret with S3 keys (access_key_id, secret_access_key) and the pipeline's "
        "MLflow user (mlflow_pipeline_username, mlflow_pipeline_password) and signing key "
        "(signing_private_key, PEM); unset = from the Airflow connections (and no signing key).",
    )
    labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/part-of": "sentiflow"})
