"""k8s/: what Airflow may do and where training runs: the pod launcher's Role and binding (pods in
sentiflow-training only, no rights over serving), the trainer pod template against the pod the DAG's
KubernetesPodOperator renders (with a kubeconfig that points nowhere: it only reads it, it never connects),
the trainer image against the compose default, and the production shape of the Helm values.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.deployment.k8s_manifests import K8S, ROOT, by_kind, manifests


# --- RBAC -------------------------------------------------------------------------------------------------
def test_airflow_may_start_and_clean_up_pods_and_nothing_more():
    role = by_kind("Role", "sentiflow-pod-launcher")
    rules = {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    assert {"create", "get", "watch", "delete"} <= rules["pods"]
    assert "get" in rules["pods/log"]
    assert all(r["apiGroups"] == [""] for r in role["rules"])
    assert "*" not in json.dumps(role["rules"])
    binding = by_kind("RoleBinding", "sentiflow-pod-launcher")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
    assert ("sentiflow-training", "sentiflow-airflow") in subjects
    assert ("airflow", "airflow-worker") in subjects


def test_training_has_no_rights_over_serving():
    """Airflow's pod rights (create, exec, delete) are in sentiflow-training only, where nothing of serving
    lives: the model server, its database, MLflow and sentiflow-credentials are in sentiflow, where no Role
    or binding grants anyone anything, and the trainer's ServiceAccount gets no API token."""
    role = by_kind("Role", "sentiflow-pod-launcher")
    binding = by_kind("RoleBinding", "sentiflow-pod-launcher")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "sentiflow-training"
    rbac = [d for _, d in manifests() if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    assert all(d["metadata"]["namespace"] == "sentiflow-training" for d in rbac)
    assert not [d for _, d in manifests() if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    in_training = {
        (d["kind"], d["metadata"]["name"])
        for _, d in manifests()
        if d["metadata"].get("namespace") == "sentiflow-training"
    }
    workloads = {k for k, _ in in_training} & {"Deployment", "StatefulSet", "Service", "DaemonSet"}
    assert not workloads, in_training
    assert ("Secret", "sentiflow-credentials") not in in_training
    pod = by_kind("Pod", "sentiflow-train")
    assert pod["metadata"]["namespace"] == "sentiflow-training"
    assert pod["spec"]["automountServiceAccountToken"] is False
    values = {e["name"]: e["value"] for e in yaml.safe_load((K8S / "airflow-values.yaml").read_text())["env"]}
    assert values["SENTIFLOW_TRAINER_POD_NAMESPACE"] == "sentiflow-training"
    assert values["SENTIFLOW_TRAINER_POD_SECRET_NAME"] == "sentiflow-trainer-credentials"
    compose = (ROOT / "docker-compose.yaml").read_text()
    assert "SENTIFLOW_TRAINER_POD_NAMESPACE: ${TRAINER_NAMESPACE:-sentiflow-training}" in compose


# --- the trainer pod template vs the DAG's rendered pod -------------------------------------------------
@pytest.fixture
def rendered_pod(tmp_path, monkeypatch):
    """The pod the DAG's KubernetesPodOperator would submit, with the Helm values' settings."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    from sentiflow.orchestration.pod import train_arguments, trainer_pod_kwargs

    for entry in yaml.safe_load((K8S / "airflow-values.yaml").read_text())["env"]:
        monkeypatch.setenv(entry["name"], entry["value"])
    # Out of cluster here: a kubeconfig that is read, never connected to.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    monkeypatch.setenv("SENTIFLOW_TRAINER_POD_IN_CLUSTER", "false")
    kwargs = trainer_pod_kwargs(arguments=train_arguments("s3://b/manifest.json", "transformer", "{}"))
    kwargs["config_file"] = str(kubeconfig)
    pod = KubernetesPodOperator(task_id="train", **kwargs).build_pod_request_obj()
    return ApiClient().sanitize_for_serialization(pod)


def test_trainer_template_agrees_with_the_dags_pod(rendered_pod):
    template = by_kind("Pod", "sentiflow-train")
    t_spec, r_spec = template["spec"], rendered_pod["spec"]
    t_main = t_spec["containers"][0]
    r_main = next(c for c in r_spec["containers"] if c["name"] == t_main["name"])
    assert r_main["image"] == t_main["image"]
    assert r_main["command"] == t_main["command"]
    assert r_main["args"][:2] == ["--manifest-uri", "s3://b/manifest.json"]
    for resource in ("nvidia.com/gpu", "memory"):
        assert str(r_main["resources"]["limits"][resource]) == t_main["resources"]["limits"][resource]
    assert r_main["resources"]["requests"] == t_main["resources"]["requests"]
    assert r_spec["nodeSelector"] == t_spec["nodeSelector"]
    assert r_spec["tolerations"] == t_spec["tolerations"]
    assert r_spec["serviceAccountName"] == t_spec["serviceAccountName"]
    assert rendered_pod["metadata"]["namespace"] == template["metadata"]["namespace"]
    # the same lock-down: the image's user, no privilege, a read-only root writing only to its emptyDirs
    assert r_spec["securityContext"] == t_spec["securityContext"]
    assert r_main["securityContext"] == t_main["securityContext"]
    assert r_main["securityContext"]["readOnlyRootFilesystem"] is True
    sidecar = next(c for c in r_spec["containers"] if c["name"] != t_main["name"])  # the XCom sidecar
    assert sidecar["securityContext"] == t_main["securityContext"]

    def mounts(spec, container):
        volumes = {v["name"]: v for v in spec["volumes"]}
        return {m["mountPath"]: volumes[m["name"]]["emptyDir"] for m in container["volumeMounts"]}

    rendered_mounts = mounts(r_spec, r_main)
    rendered_mounts.pop("/airflow/xcom")  # the operator's own, for the sidecar
    assert rendered_mounts == mounts(t_spec, t_main)

    # Both read the S3 keys from the same Secret keys.
    def secret_refs(container):
        return {
            e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", [])
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }

    assert secret_refs(r_main) == secret_refs(t_main)


def test_every_container_of_the_dags_pod_is_hardened(rendered_pod):
    """Whatever containers the operator adds (the XCom sidecar, init containers of a newer provider): none
    without a read-only root, each writing only to an emptyDir."""
    spec = rendered_pod["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    assert len(containers) >= 2
    for container in containers:
        ctx = container.get("securityContext") or {}
        assert ctx.get("readOnlyRootFilesystem") is True, container["name"]
        assert ctx.get("allowPrivilegeEscalation") is False, container["name"]
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            assert "emptyDir" in volume or mount.get("readOnly"), f"{container['name']}: {mount['mountPath']}"


def test_trainer_image_name_matches_the_compose_default():
    compose = (ROOT / "docker-compose.yaml").read_text()
    template_image = by_kind("Pod", "sentiflow-train")["spec"]["containers"][0]["image"]
    repo, tag = template_image.split("/")[-1].split(":")
    assert f"/{repo}:${{IMAGE_TAG:-{tag}}}" in compose


# --- Airflow Helm values ------------------------------------------------------------------------------------
def test_airflow_values_are_production_shaped():
    import airflow

    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    # pinned, and the version the image is built on and the project runs
    assert values["airflowVersion"] == airflow.__version__
    assert (
        f"apache/airflow:{values['airflowVersion']}-" in (ROOT / "docker" / "airflow.Dockerfile").read_text()
    )
    assert values["images"]["airflow"]["tag"]
    # an external database, not the chart's bundled Postgres
    assert values["postgresql"]["enabled"] is False
    assert values["data"]["metadataSecretName"]
    assert "metadataConnection" not in values["data"]
    # secrets come from Secrets, none inline
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert not values.get(key), key
    # remote task logs in S3, through the sentiflow_s3 connection
    logging = values["config"]["logging"]
    assert logging["remote_logging"] == "True"
    assert logging["remote_base_log_folder"].startswith("s3://")
    assert logging["remote_log_conn_id"] == "sentiflow_s3"
