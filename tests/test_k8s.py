"""k8s/: every manifest validates against the Kubernetes API schemas, and the trainer pod template agrees
with the pod the DAG's KubernetesPodOperator renders.

No cluster here: validation uses kubernetes-validate's strict JSON schemas (unknown fields fail) and the
`kubernetes` client's models; the operator renders its pod with a kubeconfig that points nowhere (it only
reads it, it never connects).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
KUBE_VERSION = "1.33.0"  # oldest Kubernetes the manifests target; autoscaling/v2 and policy/v1 are GA there
NOT_MANIFESTS = {"airflow-values.yaml", "kustomization.yaml"}


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in NOT_MANIFESTS:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind: str, name: str | None = None) -> dict:
    found = [
        d for _, d in manifests() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _validate(doc: dict) -> None:
    kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is not installed")
    kv.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    "doc",
    [d for _, d in manifests()],
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in manifests()],
)
def test_manifest_validates_against_kubernetes_schema(doc):
    _validate(doc)


def test_schema_validation_catches_a_wrong_field():
    from kubernetes_validate.utils import ValidationError

    bad = json.loads(json.dumps(by_kind("Deployment", "model-server")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/ready"
    with pytest.raises(ValidationError):
        _validate(bad)


@pytest.mark.parametrize(
    "kind", ["Deployment", "Service", "HorizontalPodAutoscaler", "Pod", "Role", "Secret"]
)
def test_manifests_deserialize_into_kubernetes_client_models(kind):
    from kubernetes.client import ApiClient

    doc = next(d for _, d in manifests() if d["kind"] == kind)
    version = doc["apiVersion"].split("/")[-1].capitalize()
    model = ApiClient().deserialize(SimpleNamespace(data=json.dumps(doc)), f"{version}{kind}")
    assert model.metadata.name == doc["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS
    assert set(kustomization["resources"]) == files - {"secret.template.yaml", "trainer-pod-template.yaml"}
    namespaces = {
        d["metadata"].get("namespace", "sentiflow") for _, d in manifests() if d["kind"] != "Namespace"
    }
    assert namespaces == {kustomization["namespace"]} == {by_kind("Namespace")["metadata"]["name"]}


# --- model server ---------------------------------------------------------------------------------------
def test_model_server_probes_resources_service_and_autoscaler():
    deployment = by_kind("Deployment", "model-server")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["command"] == [
        "gunicorn",
        "--config",
        "serving/gunicorn.conf.py",
        "--bind",
        "0.0.0.0:8000",
        "serving.app:create_app()",
    ]
    port = container["ports"][0]
    service = by_kind("Service", "model-server")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    settings = by_kind("ConfigMap", "sentiflow-settings")["data"]
    assert settings["SENTIFLOW_SERVER_URL"].endswith(f":{service['spec']['ports'][0]['port']}")
    assert "model-server." in settings["SENTIFLOW_SERVER_URL"]
    hpa = by_kind("HorizontalPodAutoscaler", "model-server")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "model-server",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_every_secret_key_referenced_exists_in_the_template():
    secret = by_kind("Secret", "sentiflow-credentials")
    keys = set(secret["stringData"])
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml") if p.name != "secret.template.yaml")
    referenced = set(re.findall(r"name: sentiflow-credentials, key: (\w+)", text))
    assert referenced and referenced <= keys
    assert all(v in ("CHANGE_ME", "") for v in secret["stringData"].values()), "no real secret in the repo"


def test_configmap_names_are_library_settings():
    from test_compose import settings_env_names

    known = settings_env_names()
    data = by_kind("ConfigMap", "sentiflow-settings")["data"]
    unknown = [k for k in data if k.startswith("SENTIFLOW_") and k not in known]
    assert not unknown
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    unknown = [
        e["name"] for e in values["env"] if e["name"].startswith("SENTIFLOW_") and e["name"] not in known
    ]
    assert not unknown  # SENTIFLOW_PIPELINE_TRAIN_BACKEND included: PipelineSettings.train_backend


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
    assert ("sentiflow", "sentiflow-airflow") in subjects


# --- the trainer pod template vs the DAG's rendered pod -------------------------------------------------
@pytest.fixture
def rendered_pod(tmp_path, monkeypatch):
    """The pod the DAG's KubernetesPodOperator would submit, with the Helm values' settings."""
    pytest.importorskip("sentiflow.orchestration.pod", reason="the pipeline package is not there yet")
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

    # Both read the S3 keys from the same Secret keys.
    def secret_refs(container):
        return {
            e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", [])
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }

    assert secret_refs(r_main) == secret_refs(t_main)


def test_trainer_image_name_matches_the_compose_default():
    compose = (ROOT / "docker-compose.yaml").read_text()
    template_image = by_kind("Pod", "sentiflow-train")["spec"]["containers"][0]["image"]
    repo, tag = template_image.split("/")[-1].split(":")
    assert f"/{repo}:${{IMAGE_TAG:-{tag}}}" in compose


def test_model_server_rows_live_in_the_shared_postgres_not_on_a_pod():
    """Issue 13: feedback, replica rows and deployments are in one Postgres with a volume claim; the pods'
    emptyDir holds only their own files, and nothing asks for a manual rollout after a promotion."""
    from sqlalchemy.engine import make_url

    deployment = by_kind("Deployment", "model-server")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "SENTIFLOW_SERVER_FOLLOW_ALIAS" in env and "SENTIFLOW_SERVER_STARTUP_ALIAS" not in env
    url = make_url(
        env["SENTIFLOW_SERVER_FEEDBACK_DB_URL"]["value"].replace("$(MODEL_SERVER_DB_PASSWORD)", "x")
    )
    assert url.get_backend_name() == "postgresql"
    names_before = list(env)
    assert names_before.index("MODEL_SERVER_DB_PASSWORD") < names_before.index(
        "SENTIFLOW_SERVER_FEEDBACK_DB_URL"
    )
    db = by_kind("StatefulSet", "model-server-db")
    service = by_kind("Service", "model-server-db")
    assert url.host == service["metadata"]["name"] and url.port == service["spec"]["ports"][0]["port"]
    (pg,) = db["spec"]["template"]["spec"]["containers"]
    pg_env = {e["name"]: e.get("value") for e in pg["env"]}
    assert pg_env["POSTGRES_DB"] == url.database and pg_env["POSTGRES_USER"] == url.username
    data_mount = next(m for m in pg["volumeMounts"] if m["mountPath"] == "/var/lib/postgresql/data")
    assert data_mount["name"] in {c["metadata"]["name"] for c in db["spec"]["volumeClaimTemplates"]}
    assert "rollout restart" not in (K8S / "model-server.yaml").read_text()


def test_the_documented_airflow_secret_carries_the_servers_drift_hash_key():
    """The drift report (an Airflow task) must hash with the key the server hashes production tokens with."""
    import re

    server_env = by_kind("Deployment", "model-server")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e["name"] == "SENTIFLOW_DRIFT_HASH_KEY" for e in server_env)
    docs = (K8S.parent / "docs" / "deployment.md").read_text()
    command = re.search(r"create secret generic sentiflow-airflow-connections(.*?)\n\S", docs, re.S)
    assert command and "--from-literal=SENTIFLOW_DRIFT_HASH_KEY=" in command.group(1)
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    assert "sentiflow-airflow-connections" in values["extraEnvFrom"]
