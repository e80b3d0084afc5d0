"""The trainer pod as Kubernetes would get it from the DAGs (rendered without a cluster, in a child process
that imports Airflow and parses the DAG folder).

The pod's command and resources alone (``pod_command``, ``trainer_pod_kwargs``) are in
tests/unit/orchestration/test_pipeline_pod_gpus.py; connection → settings in test_pipeline_pod.py there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentiflow.orchestration.pod import pod_command
from tests.integration.orchestration.test_dag_integrity import REPO, run_airflow_script

POD = r"""
import io, json, sys, contextlib
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
op = bag.dags["sentiment_pipeline"].get_task("train_kubernetes")
pod = op.build_pod_request_obj(dry_run=True).to_dict()
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    op.dry_run()
mapped = bag.dags["sentiment_sweep"].get_task("train_grid_kubernetes")
print("JSON" + json.dumps({
    "pod": pod, "dry_run": printed.getvalue(),
    "operator": {"startup_timeout_seconds": op.startup_timeout_seconds,
                 "schedule_timeout_seconds": op.schedule_timeout_seconds,
                 "on_finish_action": str(getattr(op.on_finish_action, "value", op.on_finish_action)),
                 "do_xcom_push": op.do_xcom_push, "template_fields": list(op.template_fields),
                 "upstream": sorted(op.upstream_task_ids)},
    "sweep_mapped_over": sorted(mapped.expand_input.value.keys()),
}, default=str))
"""


def render_pod(tmp_path: Path, **env: str) -> dict:
    return run_airflow_script(POD, tmp_path, str(REPO / "dags"), env=env)


@pytest.mark.slow  # parses the DAGs in a child process (~20 s on 2 shared cores)
def test_pod_requests_a_gpu_and_runs_the_training_entrypoint(tmp_path: Path) -> None:
    out = render_pod(tmp_path, SENTIFLOW_TRAINER_POD_IMAGE="registry.example/sentiflow-trainer:1.2")
    spec = out["pod"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "registry.example/sentiflow-trainer:1.2"
    assert container["command"] == ["python", "-m", "sentiflow.train"]
    args = container["args"]
    # the inputs come from the upstream tasks' outputs (XComArgs), rendered when the pod starts
    assert "xcom_pull(task_ids='training_data'" in args[args.index("--manifest-uri") + 1]
    params_json = args[args.index("--params-json") + 1]
    assert "xcom_pull(task_ids='validate_params'" in params_json and "key='transformer'" in params_json
    assert params_json.endswith("| tojson }}")  # a dict in XCom, JSON on the command line
    assert args[args.index("--family") + 1] == "transformer"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e for e in container["env"]}
    assert "conn.sentiflow_s3.extra_dejson" in env["SENTIFLOW_S3_ENDPOINT_URL"]["value"]
    assert env["SENTIFLOW_MLFLOW_TRACKING_URI"]["value"] == "{{ conn.sentiflow_mlflow.host }}"
    assert env["SENTIFLOW_S3_SECRET_ACCESS_KEY"]["value"] == "{{ conn.sentiflow_s3.password }}"
    operator = out["operator"]
    assert operator["startup_timeout_seconds"] == 600 and operator["schedule_timeout_seconds"] == 1800
    assert operator["on_finish_action"] == "delete_pod" and operator["do_xcom_push"] is True
    assert {"arguments", "env_vars"} <= set(operator["template_fields"])
    assert {"training_data", "validate_params", "choose_training"} == set(operator["upstream"])
    assert "nvidia.com/gpu" in out["dry_run"] and "sentiflow.train" in out["dry_run"]
    assert out["sweep_mapped_over"] == ["arguments"]


@pytest.mark.slow
def test_pod_settings_move_secrets_to_a_kubernetes_secret_and_two_gpus_run_torchrun(tmp_path: Path) -> None:
    out = render_pod(
        tmp_path,
        SENTIFLOW_TRAINER_POD_SECRET_NAME="sentiflow-s3",
        SENTIFLOW_TRAINER_POD_GPU_COUNT="2",
        SENTIFLOW_TRAINER_POD_NODE_SELECTOR=json.dumps({"pool": "a100"}),
        SENTIFLOW_TRAINER_POD_STARTUP_TIMEOUT_SECONDS="900",
    )
    container = out["pod"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    secret = env["SENTIFLOW_S3_SECRET_ACCESS_KEY"]["value_from"]["secret_key_ref"]
    assert secret == {"name": "sentiflow-s3", "key": "secret_access_key", "optional": None}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    # two GPUs: torchrun with one process per GPU, the run's inputs unchanged, a /dev/shm
    assert container["command"] == pod_command(2)
    args = container["args"]
    assert args[args.index("--family") + 1] == "transformer"
    assert "xcom_pull(task_ids='validate_params'" in args[args.index("--params-json") + 1]
    assert "torch.distributed.run" in out["dry_run"] and "--nproc-per-node=2" in out["dry_run"]
    assert "/dev/shm" in out["dry_run"]
    assert out["pod"]["spec"]["node_selector"] == {"pool": "a100"}
    assert out["operator"]["startup_timeout_seconds"] == 900
