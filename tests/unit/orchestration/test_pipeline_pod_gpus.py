"""The trainer pod with two GPUs: it requests both, runs torchrun with one process per GPU, has a /dev/shm.

The command and resources come from ``TrainerPodSettings`` (``SENTIFLOW_TRAINER_POD_GPU_COUNT``); the pod
passes ``--gpus`` so the run's ``gpus`` parameter is what trained (a flag wins over ``--params-json``).
The pod the DAG renders with two GPUs: tests/integration/orchestration/test_pipeline_pod_dag.py.
"""

from __future__ import annotations

from sentiflow.orchestration.pod import TRAIN_ENTRYPOINT, pod_command

TORCHRUN_2 = [
    "python",
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc-per-node=2",
    "-m",
    "sentiflow.train",
    "--gpus",
    "2",
]


def test_one_gpu_keeps_the_plain_entrypoint_and_more_use_torchrun() -> None:
    assert pod_command(0) == pod_command(1) == TRAIN_ENTRYPOINT == ["python", "-m", "sentiflow.train"]
    assert pod_command(2) == TORCHRUN_2


def test_pod_kwargs_for_two_gpus(monkeypatch) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from sentiflow.orchestration.pod import train_arguments, trainer_pod_kwargs

    monkeypatch.setenv("SENTIFLOW_TRAINER_POD_GPU_COUNT", "2")
    kwargs = trainer_pod_kwargs(arguments=train_arguments("s3://b/manifest.json", "transformer", "{}"))
    pod = KubernetesPodOperator(task_id="train", **kwargs).build_pod_request_obj(dry_run=True).to_dict()
    container = pod["spec"]["containers"][0]
    assert container["command"] == TORCHRUN_2
    assert container["args"][:2] == ["--manifest-uri", "s3://b/manifest.json"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    mounts = {m["name"]: m["mount_path"] for m in container["volume_mounts"]}
    assert mounts["dshm"] == "/dev/shm"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["dshm"]["empty_dir"]["medium"] == "Memory"
