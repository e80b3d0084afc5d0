"""k8s/: the model server's Deployment, Service and autoscaler: probes, resources and command; its rows in the
shared Postgres (model-server-db), not on a pod; rollouts and drains that keep serving (preStop, PDB, spread);
threads sized from the CPU limit; database pools that fit `max_connections` at the HPA's maximum; and the
`migrate` init container that runs the schema migrations.
"""

from __future__ import annotations

import math
import re

from tests.integration.deployment.k8s_manifests import K8S, ROOT, by_kind

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
