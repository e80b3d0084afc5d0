"""The Kubernetes manifests under k8s/ and the Airflow chart's values, read without a cluster.

- **schema**: Every manifest validates against the Kubernetes API schemas and deserializes into the
  `kubernetes` client's models, the schema check catches a misspelled field, and the kustomization lists
  every manifest but the templates, in the two namespaces.
  No cluster here: kubernetes-validate's strict JSON schemas (unknown fields fail; they ship in its wheel,
  so this works offline, and a missing validator fails the test instead of skipping it) and the client's
  models.
- **serving**: The model server's Deployment, Service and autoscaler: probes, resources and command; its
  rows in the shared Postgres (model-server-db), not on a pod; rollouts and drains that keep serving
  (preStop, PDB, spread); threads sized from the CPU limit; database pools that fit `max_connections` at the
  HPA's maximum; and the `migrate` init container that runs the schema migrations.
- **mlflow**: MLflow runs on its Postgres with S3 artifacts behind its basic-auth app, the settings
  ConfigMaps point at its Service, and the mlflow-init Job makes the users the model server and the pipeline
  log in as.
- **secrets**: Every Secret key the manifests read is in secret.template.yaml (with no real secret in it)
  and is created by the `kubectl create secret` commands of docs/deployment.md, parsed as the shell reads
  them; the ConfigMap's names are library settings; the Airflow chart's Secrets carry the keys it reads, and
  the drift hash key the model server hashes with; each secret reaches only the pods that use it
  (docs/security.md).
- **network**: k8s/network-policies.yaml, checked by evaluating the NetworkPolicies (the subset of the API
  they use): every flow a component needs is allowed, the flows that must stay closed are denied, every
  namespace denies by default and every pod can resolve names.
- **airflow**: What Airflow may do and where training runs: the pod launcher's Role and binding (pods in
  sentiflow-training only, no rights over serving), the trainer pod template against the pod the DAG's
  KubernetesPodOperator renders (with a kubeconfig that points nowhere: it only reads it, it never
  connects), the trainer image against the compose default, and the production shape of the Helm values.
- **images**: Every third-party image of the manifests and the Helm values carries a digest (but those of
  image_refs.NO_PUBLIC_DIGEST); the kustomization lists every sentiflow image it deploys, so
  `kustomize edit set image` pins each at a release; and across compose, k8s/ and the Dockerfiles an image
  has one digest, which docs/deployment.md lists with its source.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from types import SimpleNamespace

import pytest
import yaml

from tests.integration.deployment.image_refs import NO_PUBLIC_DIGEST, PINNED, is_own, unpinned
from tests.integration.deployment.k8s_manifests import (
    DOCS,
    K8S,
    KUBE_VERSION,
    NAMESPACES,
    NOT_MANIFESTS,
    ROOT,
    _validate,
    _walk,
    by_kind,
    documented_secrets,
    manifests,
    secret_refs,
)


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


def test_every_manifest_is_validated_against_its_schema():
    """The validator knows every kind used here (an unknown kind would pass unchecked)."""
    import kubernetes_validate.utils as kv

    kinds = {(d["apiVersion"], d["kind"]) for _, d in manifests()}
    assert {"NetworkPolicy", "PodDisruptionBudget", "StatefulSet", "Namespace"} <= {k for _, k in kinds}
    for _, doc in manifests():
        kv.validate(doc, KUBE_VERSION, strict=True)
    bad = json.loads(json.dumps(by_kind("NetworkPolicy", "model-server")))
    bad["spec"]["ingress"][0]["from"][0]["namespaceSelectr"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    "kind",
    [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "Pod",
        "Role",
        "Secret",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "StatefulSet",
        "Job",
    ],
)
def test_manifests_deserialize_into_kubernetes_client_models(kind):
    from kubernetes.client import ApiClient

    for doc in (d for _, d in manifests() if d["kind"] == kind):
        version = doc["apiVersion"].split("/")[-1].capitalize()
        model = ApiClient().deserialize(SimpleNamespace(data=json.dumps(doc)), f"{version}{kind}")
        assert model.metadata.name == doc["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_templates():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS
    assert set(kustomization["resources"]) == files - {"secret.template.yaml", "trainer-pod-template.yaml"}
    # No kustomize `namespace:`: it would move the training resources into the serving namespace.
    assert "namespace" not in kustomization
    namespaced = [d for _, d in manifests() if d["kind"] != "Namespace"]
    assert all("namespace" in d["metadata"] for d in namespaced)
    assert {d["metadata"]["namespace"] for d in namespaced} == NAMESPACES
    assert {d["metadata"]["name"] for _, d in manifests() if d["kind"] == "Namespace"} == NAMESPACES


GUNICORN_CONF = ROOT / "serving" / "gunicorn.conf.py"


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


def test_model_server_rows_live_in_the_shared_postgres_not_on_a_pod():
    """Feedback, replica rows and deployments are in one Postgres with a volume claim; the pods'
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


# --- rollouts and drains ------------------------------------------------------------------------------------
def test_model_server_rollouts_and_drains_keep_serving():
    deployment = by_kind("Deployment", "model-server")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]
    sleep_s = pre_stop["sleep"]["seconds"]
    assert sleep_s >= 5
    graceful = re.search(r"^graceful_timeout = (\d+)", GUNICORN_CONF.read_text(), re.M)
    assert graceful
    graceful_timeout = int(graceful.group(1))
    assert pod["terminationGracePeriodSeconds"] >= sleep_s + graceful_timeout

    pdb = by_kind("PodDisruptionBudget", "model-server")
    assert "minAvailable" not in pdb["spec"]
    percent = pdb["spec"]["maxUnavailable"]
    assert isinstance(percent, str) and percent.endswith("%")
    hpa = by_kind("HorizontalPodAutoscaler", "model-server")
    for replicas in range(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"] + 1):
        evictable = math.ceil(replicas * int(percent[:-1]) / 100)  # the disruption controller rounds up
        assert 1 <= evictable <= max(1, replicas // 2), (replicas, evictable)
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )

    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= set(spread)
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert (
            constraint["labelSelector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_model_server_threads_follow_a_cpu_limit():
    """The server sizes torch/ONNX threads from the cgroup quota (sentiflow.settings.cpu_quota): the pod
    has one,
    and it gives each worker at least one thread."""
    (container,) = by_kind("Deployment", "model-server")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    limit = _cpus(container["resources"]["limits"]["cpu"])
    assert limit >= _cpus(container["resources"]["requests"]["cpu"])
    assert math.floor(limit) // int(env["SENTIFLOW_SERVER_WORKERS"]) >= 1
    assert "SENTIFLOW_SERVER_TORCH_THREADS" not in env  # derived from the quota, not fixed


# --- database connections at the HPA's maximum ------------------------------------------------------------
ENGINES_PER_WORKER = 1  # serving/store/db.py: one Database (engine) per app, shared by every store

MASTER_CONNECTIONS = 1  # gunicorn.conf.py child_exit: a short-lived engine removes a dead worker's row

HEADROOM = 3 + 10  # superuser_reserved_connections + a migration job, an operator's psql


def test_db_pools_fit_max_connections_at_the_hpas_maximum():
    from sentiflow.settings.server import ServerSettings

    deployment = by_kind("Deployment", "model-server")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    defaults = ServerSettings.model_fields
    workers = int(env.get("SENTIFLOW_SERVER_WORKERS") or defaults["workers"].default)
    pool = int(env.get("SENTIFLOW_SERVER_DB_POOL_SIZE") or defaults["db_pool_size"].default)
    overflow = int(env.get("SENTIFLOW_SERVER_DB_MAX_OVERFLOW") or defaults["db_max_overflow"].default)
    hpa = by_kind("HorizontalPodAutoscaler", "model-server")
    surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    pods = hpa["spec"]["maxReplicas"] + int(surge)  # a rollout at the maximum runs one extra pod
    per_pod = workers * ENGINES_PER_WORKER * (pool + overflow) + MASTER_CONNECTIONS
    needed = pods * per_pod + HEADROOM

    (pg,) = by_kind("StatefulSet", "model-server-db")["spec"]["template"]["spec"]["containers"]
    args = " ".join(pg.get("args", []))
    match = re.search(r"max_connections=(\d+)", args)
    assert match, "model-server-db must set max_connections explicitly"
    max_connections = int(match.group(1))
    assert needed <= max_connections, f"{pods} pods x {per_pod} + {HEADROOM} = {needed} > {max_connections}"

    # What the files and the docs say is what is computed here.
    header = (K8S / "model-server.yaml").read_text()
    assert f"= {pods * per_pod};" in header
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert f"max_connections={max_connections}" in docs
    assert f"{pods * per_pod}" in docs
    assert "SENTIFLOW_SERVER_DB_POOL_SIZE" in docs and "SENTIFLOW_SERVER_DB_MAX_OVERFLOW" in docs


def test_the_model_servers_schema_is_migrated_by_an_init_container():
    """Workers never create tables: each pod's ``migrate`` init container runs the migrations
    (under a Postgres advisory lock, so pods starting together are safe) on the server's own database URL,
    with the server's image and the same hardened security context."""
    spec = by_kind("Deployment", "model-server")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    (server,) = spec["containers"]
    assert init["command"] == ["python", "-m", "serving.store.migrate", "upgrade"]
    assert init["image"] == server["image"]
    env = {e["name"]: e for e in init["env"]}
    server_env = {e["name"]: e for e in server["env"]}
    for name in ("SENTIFLOW_SERVER_FEEDBACK_DB_URL", "MODEL_SERVER_DB_PASSWORD"):
        assert env[name] == server_env[name]
    assert init["securityContext"] == server["securityContext"]


# --- MLflow -------------------------------------------------------------------------------------------------
def test_mlflow_is_deployed_with_postgres_and_s3_artifacts():
    from sqlalchemy.engine import make_url

    deployment = by_kind("Deployment", "mlflow")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in container["args"] if "=" in a}
    values = {e["name"]: e.get("value") for e in container["env"]}
    url = make_url(values["MLFLOW_BACKEND_STORE_URI"].replace("$(MLFLOW_DB_PASSWORD)", "x"))
    assert url.get_backend_name() == "postgresql"
    db_service = by_kind("Service", "mlflow-db")
    assert url.host == db_service["metadata"]["name"] and url.port == db_service["spec"]["ports"][0]["port"]
    (pg,) = by_kind("StatefulSet", "mlflow-db")["spec"]["template"]["spec"]["containers"]
    pg_env = {e["name"]: e.get("value") for e in pg["env"]}
    assert (pg_env["POSTGRES_DB"], pg_env["POSTGRES_USER"]) == (url.database, url.username)
    assert args["--artifacts-destination"].startswith("s3://")
    assert "--serve-artifacts" in container["args"]
    env = {e["name"] for e in container["env"]}
    assert {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_S3_ENDPOINT_URL",
        "MLFLOW_DB_PASSWORD",
    } <= env

    service = by_kind("Service", "mlflow")
    port = service["spec"]["ports"][0]["port"]
    for configmap in ("sentiflow-settings", "sentiflow-trainer-settings"):
        uri = by_kind("ConfigMap", configmap)["data"]["SENTIFLOW_MLFLOW_TRACKING_URI"]
        assert uri == f"http://mlflow.{service['metadata']['namespace']}.svc.cluster.local:{port}"
        assert f"mlflow.sentiflow.svc.cluster.local:{port}" in args["--allowed-hosts"].split(",")


def _env_refs(container: dict) -> dict[str, tuple[str, str] | str | None]:
    """Env name → (Secret, key) for secretKeyRefs, else the ConfigMap key or the literal value."""
    refs: dict[str, tuple[str, str] | str | None] = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "secretKeyRef" in source:
            refs[entry["name"]] = (source["secretKeyRef"]["name"], source["secretKeyRef"]["key"])
        elif "configMapKeyRef" in source:
            refs[entry["name"]] = source["configMapKeyRef"]["key"]
        else:
            refs[entry["name"]] = entry.get("value")
    return refs


def test_mlflow_requires_a_login_and_a_job_makes_its_users():
    """MLflow runs its basic-auth app with its admin from the Secret; the Job mlflow-init makes the
    three users from the same Secret; the model server logs in as two of them; production checks them all."""
    from sqlalchemy.engine import make_url

    from sentiflow.security.credentials_check import COMPONENTS
    from sentiflow.security.mlflow_users import ROLES

    (mlflow,) = by_kind("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    assert "--app-name=basic-auth" in mlflow["args"]
    assert "command" not in mlflow  # the image's entrypoint: credentials check, then the auth app's config
    env = _env_refs(mlflow)
    assert env["SENTIFLOW_ENV"] == "SENTIFLOW_ENV"  # production, from sentiflow-settings
    users_db = make_url(str(env["MLFLOW_AUTH_DATABASE_URI"]).replace("$(MLFLOW_DB_PASSWORD)", "x"))
    backend = make_url(str(env["MLFLOW_BACKEND_STORE_URI"]).replace("$(MLFLOW_DB_PASSWORD)", "x"))
    assert (users_db.host, users_db.database) == (backend.host, "mlflow_auth")
    auth = "sentiflow-mlflow-auth"
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == (auth, "admin_username")
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == (auth, "admin_password")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == (auth, "flask_server_secret_key")
    checked = [spec.split(":")[-1] for spec in COMPONENTS["mlflow"]]
    assert set(checked) <= set(env) | {"AWS_SECRET_ACCESS_KEY"}, set(checked) - set(env)

    job = by_kind("Job", "mlflow-init")
    (init,) = job["spec"]["template"]["spec"]["containers"]
    assert init["command"] == ["python", "-m", "sentiflow.security.mlflow_users", "provision"]
    (server,) = by_kind("Deployment", "model-server")["spec"]["template"]["spec"]["containers"]
    assert init["image"] == server["image"]  # sentiflow and the MLflow client
    init_env = _env_refs(init)
    assert init_env["SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    for role in [*ROLES, "admin"]:
        for part in ("username", "password"):
            assert init_env[f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_{part.upper()}"] == (
                auth,
                f"{role}_{part}",
            )
    assert {spec.split(":")[-1] for spec in COMPONENTS["mlflow-init"]} <= set(init_env)
    for name in ("SENTIFLOW_MLFLOW_TRACKING_URI", "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME", "SENTIFLOW_ENV"):
        assert init_env[name] == name  # from sentiflow-settings, as every component reads them
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1

    server_env = _env_refs(server)
    assert server_env["MLFLOW_TRACKING_USERNAME"] == (auth, "server_username")
    assert server_env["MLFLOW_TRACKING_PASSWORD"] == (auth, "server_password")
    assert [ref for ref in server_env.values() if isinstance(ref, tuple) and ref[0] == auth] == [
        (auth, "server_username"),
        (auth, "server_password"),
    ]  # its one MLflow identity, read only
    assert "sentiflow-mlflow-auth" not in (K8S / "trainer-pod-template.yaml").read_text()  # its own namespace


def test_every_secret_key_referenced_exists_in_the_template():
    secrets = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for _, d in manifests()
        if d["kind"] == "Secret"
    }
    refs = secret_refs()
    assert refs
    for namespace, name, key in refs:
        assert (namespace, name) in secrets, f"{namespace}/{name} is not in secret.template.yaml"
        assert key in secrets[namespace, name]["stringData"], f"{namespace}/{name} lacks {key}"
    for secret in secrets.values():
        assert all(v in ("CHANGE_ME", "") for v in secret["stringData"].values()), (
            "no real secret in the repo"
        )
    # The training namespace's Secret holds the S3 keys, the pipeline's MLflow user and the signing key:
    # nothing of serving.
    trainer = secrets["sentiflow-training", "sentiflow-trainer-credentials"]["stringData"]
    assert set(trainer) == {
        "access_key_id",
        "secret_access_key",
        "mlflow_pipeline_username",
        "mlflow_pipeline_password",
        "signing_private_key",
    }


def test_configmap_names_are_library_settings():
    from tests.integration.deployment.compose_file import settings_env_names

    known = settings_env_names()
    data = by_kind("ConfigMap", "sentiflow-settings")["data"]
    unknown = [k for k in data if k.startswith("SENTIFLOW_") and k not in known]
    assert not unknown
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    unknown = [
        e["name"] for e in values["env"] if e["name"].startswith("SENTIFLOW_") and e["name"] not in known
    ]
    assert not unknown  # SENTIFLOW_PIPELINE_TRAIN_BACKEND included: PipelineSettings.train_backend


def test_the_documented_airflow_task_secret_carries_the_servers_drift_hash_key():
    """The drift report (an Airflow task) must hash with the key the server hashes production tokens with."""
    server_env = by_kind("Deployment", "model-server")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e["name"] == "SENTIFLOW_DRIFT_HASH_KEY" for e in server_env)
    assert "SENTIFLOW_DRIFT_HASH_KEY" in documented_secrets()["airflow", TASK_SECRET]


# --- who holds which secret (docs/security.md) ------------------------------------------------------
TASK_SECRET = "sentiflow-airflow-task-credentials"

#: What only the task pods may hold: the pipeline's MLflow login, the model server's admin token (in the
#: model-server connection), the drift report's hash key.
TASK_ONLY = {
    "AIRFLOW_CONN_SENTIFLOW_MLFLOW",
    "AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER",
    "MLFLOW_TRACKING_PASSWORD",
    "SENTIFLOW_DRIFT_HASH_KEY",
}


def test_every_airflow_pod_gets_only_the_log_store_connection_and_the_public_keys():
    """The chart's extraEnvFrom reaches every Airflow pod (API server, scheduler, DAG processor, triggerer,
    task pods): it holds the object-store connection of the task logs and nothing of the pipeline's else."""
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    every_pod = yaml.safe_load(values["extraEnvFrom"])
    secrets = {e["secretRef"]["name"] for e in every_pod if "secretRef" in e}
    assert secrets == {"sentiflow-airflow-connections"}
    assert documented_secrets()["airflow", "sentiflow-airflow-connections"] == {"AIRFLOW_CONN_SENTIFLOW_S3"}
    for key in ("extraEnv", "secret", "env"):  # the chart's other every-pod settings hold no secret
        assert TASK_SECRET not in str(values.get(key) or ""), key
        assert "secretKeyRef" not in str(values.get(key) or ""), key


def test_the_pipelines_credentials_are_mounted_in_the_task_pods_only():
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    assert documented_secrets()["airflow", TASK_SECRET] >= TASK_ONLY
    volumes = {v["name"]: v for v in values["workers"]["extraVolumes"]}
    (name,) = [n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == TASK_SECRET]
    mounts = {m["name"]: m for m in values["workers"]["extraVolumeMounts"]}
    assert mounts[name]["readOnly"] is True
    # the image's entrypoint exports the files of that folder (and task pods run that image)
    assert mounts[name]["mountPath"] in (K8S.parent / "docker" / "airflow" / "task-env.sh").read_text()
    assert (
        "source /opt/sentiflow/task-env.sh"
        in (K8S.parent / "docker" / "airflow" / "entrypoint.sh").read_text()
    )
    assert values["images"]["pod_template"] == values["images"]["airflow"]
    # no other component of the chart mounts or reads it
    rest = {k: v for k, v in values.items() if k != "workers"}
    assert TASK_SECRET not in yaml.safe_dump(rest)


def test_the_model_servers_secrets_reach_the_model_server_only():
    """The admin token, the metrics token and the prediction secret: read by the model server's
    Deployment and no other workload of k8s/; the pipeline's MLflow password only by the Job that makes
    the users."""
    readers: dict[str, set[str]] = {}
    for _, doc in manifests():
        if doc["kind"] == "Secret":
            continue
        for node in _walk(doc):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                readers.setdefault(f"{ref['name']}/{ref['key']}", set()).add(doc["metadata"]["name"])
    for key in (
        "server_admin_token",
        "server_metrics_token",
        "server_reviewer_token",
        "server_prediction_secret",
    ):
        assert readers[f"sentiflow-credentials/{key}"] == {"model-server"}, key
    assert readers["sentiflow-mlflow-auth/pipeline_password"] == {"mlflow-init"}


# --- the documented `kubectl create secret` commands --------------------------------------------------------
def test_documented_secret_commands_create_every_key_the_manifests_read():
    created = documented_secrets()
    for namespace, name, key in secret_refs(optional=False):
        assert (namespace, name) in created, f"docs/deployment.md creates no Secret {namespace}/{name}"
        assert key in created[namespace, name], f"the documented command leaves {key} out of {name}"


def test_documented_secret_commands_parse_like_the_shell():
    """The parser sees what the shell sees: a missing `\\` ends the command (the bug it catches)."""
    broken = "kubectl -n s create secret generic x \\\n  --from-literal=a=1\n  --from-literal=b=2\n"
    lines = broken.replace("\\\n", " ").splitlines()
    assert shlex.split(lines[0])[-1] == "--from-literal=a=1"
    assert not lines[1].lstrip().startswith("kubectl")


def test_documented_airflow_secrets_carry_the_keys_the_chart_reads():
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    created = documented_secrets()
    expected = {
        values["data"]["metadataSecretName"]: "connection",
        values["fernetKeySecretName"]: "fernet-key",
        values["apiSecretKeySecretName"]: "api-secret-key",
        values["jwtSecretName"]: "jwt-secret",
    }
    for name, key in expected.items():
        assert key in created.get(("airflow", name), set()), f"docs create no airflow/{name} with {key}"


def test_each_database_password_reaches_only_its_component_and_its_database():
    """Every database is its own Postgres: its password is read by that database's pod and its component's
    pods only (the server's role cannot open MLflow's database, nor Airflow's, whose chart keeps its own)."""
    readers: dict[str, set[str]] = {}
    for _, doc in manifests():
        if doc["kind"] == "Secret":
            continue
        for node in _walk(doc):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and ref["key"].endswith("_db_password"):
                readers.setdefault(ref["key"], set()).add(doc["metadata"]["name"])
    assert readers == {
        "server_db_password": {"model-server", "model-server-db"},  # its migrations: an init container
        "mlflow_db_password": {"mlflow", "mlflow-db"},
    }
    values = (K8S / "airflow-values.yaml").read_text()
    assert "_db_password" not in values


def test_the_task_pods_entrypoint_exports_each_mounted_key_as_its_variable(tmp_path):
    """What a Secret volume looks like (a file per key, beside ``..data`` links): each key becomes the
    variable of its name, with its value as written, and nothing else is exported."""
    import os
    import subprocess

    folder = tmp_path / "task-env"
    (folder / "..data").mkdir(parents=True)
    conn = '{"conn_type": "http", "host": "http://mlflow:5000", "login": "p", "password": "s e=c"}'
    (folder / "..data" / "AIRFLOW_CONN_SENTIFLOW_MLFLOW").write_text(conn)
    (folder / "AIRFLOW_CONN_SENTIFLOW_MLFLOW").symlink_to("..data/AIRFLOW_CONN_SENTIFLOW_MLFLOW")
    (folder / "SENTIFLOW_DRIFT_HASH_KEY").write_text("k3y\n")
    (folder / "not-a-name").write_text("x")
    script = K8S.parent / "docker" / "airflow" / "task-env.sh"
    env = {"PATH": os.environ["PATH"], "SENTIFLOW_TASK_ENV_DIR": str(folder)}
    out = subprocess.run(
        ["bash", "-c", f"source {script}; env -0"], capture_output=True, text=True, env=env, check=True
    ).stdout
    exported = dict(item.split("=", 1) for item in out.split("\0") if item)
    assert exported["AIRFLOW_CONN_SENTIFLOW_MLFLOW"] == conn
    assert exported["SENTIFLOW_DRIFT_HASH_KEY"] == "k3y"
    assert not {"not-a-name", "task_env_dir", "task_env_name"} & exported.keys()


def _labels_match(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the evaluator knows matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict, policy_ns: str, ns: str, labels: dict) -> bool:
    if "ipBlock" in peer:  # every ipBlock here excludes the private ranges pods and Services live in
        return False
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and ns != policy_ns:
        return False
    if ns_sel is not None and not _labels_match(ns_sel, {"kubernetes.io/metadata.name": ns}):
        return False
    return pod_sel is None or _labels_match(pod_sel, labels)


def _port_matches(rule: dict, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _direction_allows(direction: str, me: tuple[str, dict], peer: tuple[str, dict], port: int, proto: str):
    """Kubernetes semantics: isolated if any policy selects the pod for this direction; then allowed if
    any of those policies has a rule matching the peer and the port."""
    ns, labels = me
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        d
        for _, d in manifests()
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["namespace"] == ns
        and direction in d["spec"]["policyTypes"]
        and _labels_match(d["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True  # namespaces these manifests do not police (airflow's chart, ingress-nginx)
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (
                peers is None or any(_peer_matches(p, ns, peer[0], peer[1]) for p in peers)
            ) and _port_matches(rule, port, proto):
                return True
    return False


def allowed(src: tuple[str, dict], dst: tuple[str, dict], port: int, proto: str = "TCP") -> bool:
    return _direction_allows("Egress", src, dst, port, proto) and _direction_allows(
        "Ingress", dst, src, port, proto
    )


def _pod(kind: str, name: str) -> tuple[str, dict]:
    doc = by_kind(kind, name)
    template = doc if kind == "Pod" else doc["spec"]["template"]
    return doc["metadata"]["namespace"], template["metadata"]["labels"]


MODEL_SERVER = ("Deployment", "model-server")

SERVER_DB = ("StatefulSet", "model-server-db")

REDIS = ("Deployment", "redis")

MLFLOW = ("Deployment", "mlflow")

MLFLOW_DB = ("StatefulSet", "mlflow-db")

MLFLOW_INIT = ("Job", "mlflow-init")

OBJECT_STORE = ("StatefulSet", "object-store")

OBJECT_STORE_INIT = ("Job", "object-store-init")

TRAINER = ("Pod", "sentiflow-train")

AIRFLOW_POD = ("airflow", {"component": "worker"})

INGRESS_POD = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})

KUBE_DNS = ("kube-system", {"k8s-app": "kube-dns"})

ELSEWHERE = ("default", {"app": "anything"})

# pods labelled as sentiflow's components, in a namespace that is not sentiflow's
FAKE_OBJECT_STORE = ("default", {"app.kubernetes.io/name": "object-store"})

FAKE_MLFLOW = ("default", {"app.kubernetes.io/name": "mlflow"})


def _resolve(x):
    return _pod(*x) if isinstance(x[1], str) else x


@pytest.mark.parametrize(
    ("src", "dst", "port"),
    [
        (INGRESS_POD, MODEL_SERVER, 8000),
        (AIRFLOW_POD, MODEL_SERVER, 8000),  # the DAG's deploy and inference check
        (MODEL_SERVER, SERVER_DB, 5432),
        (MODEL_SERVER, REDIS, 6379),  # the shared rate-limit counters
        (MODEL_SERVER, MLFLOW, 5000),
        (AIRFLOW_POD, MLFLOW, 5000),
        (TRAINER, MLFLOW, 5000),
        (MLFLOW_INIT, MLFLOW, 5000),  # makes MLflow's users and grants
        (MLFLOW, MLFLOW_DB, 5432),
        (MODEL_SERVER, OBJECT_STORE, 8333),
        (MLFLOW, OBJECT_STORE, 8333),  # its artifact store
        (AIRFLOW_POD, OBJECT_STORE, 8333),  # data, task logs
        (TRAINER, OBJECT_STORE, 8333),
        (OBJECT_STORE_INIT, OBJECT_STORE, 8333),  # makes the bucket
    ],
    ids=str,
)
def test_network_policies_allow_what_each_component_needs(src, dst, port):
    assert allowed(_resolve(src), _resolve(dst), port)


@pytest.mark.parametrize(
    ("src", "dst", "port"),
    [
        (TRAINER, SERVER_DB, 5432),  # training never reaches serving's data
        (TRAINER, MODEL_SERVER, 8000),
        (TRAINER, MLFLOW_DB, 5432),
        (AIRFLOW_POD, SERVER_DB, 5432),
        (AIRFLOW_POD, MLFLOW_DB, 5432),
        (MODEL_SERVER, MLFLOW_DB, 5432),
        (MLFLOW, SERVER_DB, 5432),
        (SERVER_DB, MLFLOW, 5000),  # databases open nothing
        (ELSEWHERE, MODEL_SERVER, 8000),  # other namespaces: denied by default
        (ELSEWHERE, MLFLOW, 5000),
        (INGRESS_POD, MLFLOW, 5000),  # MLflow is not published through the ingress
        (INGRESS_POD, MODEL_SERVER, 9000),
        (MODEL_SERVER, TRAINER, 8000),  # nothing connects to training pods
        (TRAINER, REDIS, 6379),  # only the model server reaches the rate-limit counters
        (AIRFLOW_POD, REDIS, 6379),
        (MLFLOW, REDIS, 6379),
        (REDIS, MODEL_SERVER, 8000),
        (MLFLOW_INIT, MLFLOW_DB, 5432),  # the provisioning Job reaches MLflow, nothing else
        (MLFLOW_INIT, SERVER_DB, 5432),
        (MLFLOW_INIT, MODEL_SERVER, 8000),
        (MLFLOW_INIT, OBJECT_STORE, 8333),
        (OBJECT_STORE_INIT, MLFLOW, 5000),  # the bucket Job reaches the object store, nothing else
        (OBJECT_STORE_INIT, SERVER_DB, 5432),
        (OBJECT_STORE, MLFLOW, 5000),  # the object store opens nothing
        (OBJECT_STORE, SERVER_DB, 5432),
        (ELSEWHERE, OBJECT_STORE, 8333),
        (INGRESS_POD, OBJECT_STORE, 8333),  # S3 is not published through the ingress
        (REDIS, OBJECT_STORE, 8333),
        (MODEL_SERVER, MLFLOW_INIT, 8000),
        (MODEL_SERVER, FAKE_OBJECT_STORE, 8333),  # a look-alike label in another namespace is no peer
        (MLFLOW, FAKE_OBJECT_STORE, 8333),
        (TRAINER, FAKE_MLFLOW, 5000),
        (FAKE_MLFLOW, OBJECT_STORE, 8333),
    ],
    ids=str,
)
def test_network_policies_deny_everything_else(src, dst, port):
    assert not allowed(_resolve(src), _resolve(dst), port)


def test_every_namespace_denies_by_default_and_every_pod_resolves_names():
    for ns in NAMESPACES:
        deny = [
            d
            for _, d in manifests()
            if d["kind"] == "NetworkPolicy"
            and d["metadata"]["namespace"] == ns
            and d["spec"]["podSelector"] == {}
            and set(d["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not d["spec"].get("ingress")
            and not d["spec"].get("egress")
        ]
        assert deny, f"{ns} has no default-deny NetworkPolicy"
    for pod in (
        MODEL_SERVER,
        SERVER_DB,
        REDIS,
        MLFLOW,
        MLFLOW_DB,
        MLFLOW_INIT,
        OBJECT_STORE,
        OBJECT_STORE_INIT,
        TRAINER,
    ):
        for proto in ("UDP", "TCP"):
            assert _direction_allows("Egress", _pod(*pod), KUBE_DNS, 53, proto), pod


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


# --- images ---------------------------------------------------------------------------------------------
def _manifest_images(files: set[str] | None = None) -> list[str]:
    return [
        node["image"]
        for name, doc in manifests()
        if files is None or name in files
        for node in _walk(doc)
        if isinstance(node.get("image"), str)
    ]


def _values_images() -> list[str]:
    """The images the Helm values name, as the chart joins them (a digest wins over the tag), and the
    training pod's."""
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    refs = [
        image["repository"] + (f"@{image['digest']}" if image.get("digest") else f":{image['tag']}")
        for image in values["images"].values()
        if isinstance(image, dict) and image.get("repository")
    ]
    return refs + [entry["value"] for entry in values["env"] if entry["name"].endswith("_IMAGE")]


def test_every_third_party_image_of_the_manifests_and_values_is_pinned_by_digest():
    refs = _manifest_images() + _values_images()
    assert any(not is_own(ref) for ref in refs)
    assert unpinned(refs) == []


def test_the_kustomization_can_pin_every_sentiflow_image_it_deploys():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    deployed = {
        re.split(r"[:@]", ref)[0] for ref in _manifest_images(set(kustomization["resources"])) if is_own(ref)
    }
    assert deployed == {entry["name"] for entry in kustomization["images"]}


def test_each_image_has_one_digest_and_the_docs_give_its_source():
    files = [
        ROOT / "docker-compose.yaml",
        ROOT / ".env.example",
        *K8S.glob("*.yaml"),
        *(ROOT / "docker").glob("*.Dockerfile"),
    ]
    pinned = {ref for path in files for ref in PINNED.findall(path.read_text())}
    digests: dict[str, set[str]] = {}
    for ref in pinned:
        digests.setdefault(ref.split("@")[0], set()).add(ref)
    assert {name: refs for name, refs in digests.items() if len(refs) > 1} == {}
    docs = DOCS.read_text()
    assert sorted(ref for ref in pinned | NO_PUBLIC_DIGEST if ref not in docs) == []
