"""The KubernetesPodOperator arguments of the GPU training pod, built from ``TrainerPodSettings``.

The pod runs the same entrypoint as local training (``python -m sentiflow.train``); with more than one GPU
(``gpu_count``) it runs it under torchrun, one DDP process per GPU, and passes ``--gpus`` so the run's
parameters say what trained. The run's result comes back through the XCom sidecar (rank 0 writes
``/airflow/xcom/return.json``). A memory-backed ``/dev/shm`` lets data-loader workers and NCCL pass batches
through shared memory (a container's default is 64 MiB). Endpoints come from the
Airflow connections as templates rendered at run time; the S3 secret key comes from a Kubernetes Secret when
``secret_name`` is set (production), else from the connection (rendered values are masked by Airflow).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sentiflow.orchestration.settings import PipelineSettings, TrainerPodSettings
from sentiflow.settings.components import ENV_PREFIX, MLflowSettings, RuntimeEnvironment
from sentiflow.train.distributed import entrypoint_command

TRAIN_ENTRYPOINT = entrypoint_command(1)


#: The trainer image's user (docker/trainer.Dockerfile).
TRAINER_UID = 10001
#: What the trainer writes on its read-only root: scratch files (checkpoints, MPLCONFIGDIR) and the
#: pretrained models' download cache (HF_HOME), each an emptyDir.
WRITABLE_DIRS = {"tmp": "/tmp", "cache": "/home/sentiflow/.cache"}


def pod_command(gpus: int) -> list[str]:
    """The container's command: the entrypoint, under torchrun with ``--gpus N`` when N > 1."""
    if gpus <= 1:
        return list(TRAIN_ENTRYPOINT)
    return [*entrypoint_command(gpus), "--gpus", str(gpus)]  # a flag: it wins over --params-json


def train_arguments(manifest_uri: str, family: str, params_json: str) -> list[str]:
    """Arguments of the training entrypoint; the values may be Jinja templates (rendered by Airflow)."""
    return ["--manifest-uri", manifest_uri, "--family", family, "--params-json", params_json]


def pod_env_templates(pipeline: PipelineSettings, pod: TrainerPodSettings) -> dict[str, str]:
    """``SENTIFLOW_*`` env of the pod as Jinja templates over the Airflow connections."""
    s3, mlflow = pipeline.s3_conn_id, pipeline.mlflow_conn_id
    env = {
        f"{ENV_PREFIX}S3_ENDPOINT_URL": f"{{{{ conn.{s3}.extra_dejson.get('endpoint_url', '') }}}}",
        f"{ENV_PREFIX}S3_REGION": f"{{{{ conn.{s3}.extra_dejson.get('region_name', 'us-east-1') }}}}",
        f"{ENV_PREFIX}MLFLOW_TRACKING_URI": f"{{{{ conn.{mlflow}.host }}}}",
        "MLFLOW_TRACKING_URI": f"{{{{ conn.{mlflow}.host }}}}",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # the pod runs in the Airflow worker's mode: a production worker starts a production trainer, which
        # refuses placeholder credentials and a missing signing key (sentiflow.security.credentials_check)
        f"{ENV_PREFIX}ENV": RuntimeEnvironment().env,
        # the run's registered_model_name param (several models in one Airflow), else the deployment's
        f"{ENV_PREFIX}MLFLOW_REGISTERED_MODEL_NAME": "{{ params.get('registered_model_name') or '"
        + MLflowSettings().registered_model_name
        + "' }}",
    }
    if pod.secret_name is None:
        env[f"{ENV_PREFIX}S3_ACCESS_KEY_ID"] = f"{{{{ conn.{s3}.login }}}}"
        env[f"{ENV_PREFIX}S3_SECRET_ACCESS_KEY"] = f"{{{{ conn.{s3}.password }}}}"
        env["MLFLOW_TRACKING_USERNAME"] = f"{{{{ conn.{mlflow}.login }}}}"
        env["MLFLOW_TRACKING_PASSWORD"] = f"{{{{ conn.{mlflow}.password }}}}"
    return env


def trainer_pod_kwargs(
    *,
    arguments: list[str],
    pipeline: PipelineSettings | None = None,
    pod: TrainerPodSettings | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``KubernetesPodOperator`` (everything except ``task_id``); one retry."""
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    pipeline = pipeline or PipelineSettings()
    pod = pod or TrainerPodSettings()
    limits = {"memory": pod.memory_limit}
    if pod.gpu_count:
        limits[pod.gpu_resource] = str(pod.gpu_count)
    secrets = []
    if pod.secret_name:
        secrets = [
            Secret("env", f"{ENV_PREFIX}S3_ACCESS_KEY_ID", pod.secret_name, "access_key_id"),
            Secret("env", f"{ENV_PREFIX}S3_SECRET_ACCESS_KEY", pod.secret_name, "secret_access_key"),
            # the pipeline's MLflow identity
            Secret("env", "MLFLOW_TRACKING_USERNAME", pod.secret_name, "mlflow_pipeline_username"),
            Secret("env", "MLFLOW_TRACKING_PASSWORD", pod.secret_name, "mlflow_pipeline_password"),
            Secret("env", "SENTIFLOW_SIGNING_PRIVATE_KEY", pod.secret_name, "signing_private_key"),
        ]
    return {
        "name": "sentiflow-train",
        "execution_timeout": timedelta(seconds=pod.execution_timeout_s),
        "retries": 1,
        "namespace": pod.namespace,
        "image": pod.image,
        "image_pull_policy": pod.image_pull_policy,
        "cmds": pod_command(pod.gpu_count),
        "arguments": arguments,
        "env_vars": pod_env_templates(pipeline, pod),
        "secrets": secrets,
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": pod.cpu_request, "memory": pod.memory_request}, limits=limits
        ),
        # The trainer image's user, on a read-only root: the pod writes only to its emptyDirs.
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=TRAINER_UID,
            run_as_group=0,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": _locked_down(k8s),
        "xcom_sidecar_container_security_context": _locked_down(k8s),
        "volumes": [
            k8s.V1Volume(
                name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=pod.shm_size)
            ),
            *(k8s.V1Volume(name=name, empty_dir=k8s.V1EmptyDirVolumeSource()) for name in WRITABLE_DIRS),
        ],
        "volume_mounts": [
            k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
            *(k8s.V1VolumeMount(name=name, mount_path=path) for name, path in WRITABLE_DIRS.items()),
        ],
        "node_selector": dict(pod.node_selector),
        "tolerations": [k8s.V1Toleration(**_snake(t)) for t in pod.tolerations],
        "labels": dict(pod.labels),
        "kubernetes_conn_id": pod.kubernetes_conn_id,
        "in_cluster": pod.in_cluster,
        "service_account_name": pod.service_account_name,
        "startup_timeout_seconds": pod.startup_timeout_seconds,
        "schedule_timeout_seconds": pod.schedule_timeout_seconds,
        "on_finish_action": "delete_pod",
        "do_xcom_push": True,
        "get_logs": True,
        "log_events_on_failure": True,
    }


def _locked_down(k8s: Any) -> Any:
    """A container that cannot gain privileges, holds no capability and writes only to its volumes."""
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )


def _snake(toleration: dict[str, Any]) -> dict[str, Any]:
    """Accept Kubernetes' camelCase (``tolerationSeconds``) as well as the client's snake_case."""
    out = {}
    for key, value in toleration.items():
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
        out[snake] = value
    return out
