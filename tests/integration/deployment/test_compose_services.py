"""docker-compose.yaml's services: every one has a healthcheck, every `depends_on` waits for health (or for a
one-shot service to complete), state lives in named volumes, the model server's replicas share Postgres and
keep nothing in a volume, and its schema is migrated once before it starts.
"""

from __future__ import annotations

import json

from tests.integration.deployment.compose_file import service_env

ONE_SHOT = {"s3-init", "mlflow-init", "airflow-init", "model-server-migrate"}


# --- healthchecks, start order, volumes ---------------------------------------------------------------
def test_every_service_has_a_healthcheck(resolved):
    services = resolved["services"]
    missing = [name for name, svc in services.items() if not svc.get("healthcheck", {}).get("test")]
    assert not missing


def test_depends_on_waits_for_health_or_completion(resolved):
    services = resolved["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dep}"
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no"
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ):
        assert "airflow-init" in services[name]["depends_on"]


def test_state_lives_in_named_volumes(resolved):
    volumes = set(resolved["volumes"])
    assert {"postgres-data", "seaweedfs-data", "seaweedfs-config", "airflow-logs"} <= volumes
    for name, target in [("postgres", "/var/lib/postgresql/data"), ("seaweedfs", "/data")]:
        mounts = resolved["services"][name]["volumes"]
        named = [m for m in mounts if (m["source"] if isinstance(m, dict) else m.split(":")[0]) in volumes]
        targets = [m["target"] if isinstance(m, dict) else m.split(":")[1] for m in named]
        assert target in targets, f"{name} keeps {target} outside a named volume"


def test_model_server_replicas_share_postgres_and_keep_nothing_in_a_volume(resolved):
    """Feedback and replica rows live in Postgres, shared by every replica; no per-container
    volume holds them (the state folder is a tmpfs for the ONNX cache and Prometheus files)."""
    from sqlalchemy.engine import make_url

    server = resolved["services"]["model-server"]
    env = service_env(resolved, "model-server")
    url = make_url(env["SENTIFLOW_SERVER_FEEDBACK_DB_URL"])
    assert url.get_backend_name() == "postgresql" and url.host == "postgres"
    postgres_env = resolved["services"]["postgres"]["environment"]
    assert f"{url.database}={url.username}" in postgres_env["INIT_DATABASES"].split()
    assert url.database and url.database in json.dumps(
        resolved["services"]["postgres"]["healthcheck"]["test"]
    )
    assert "postgres" in server["depends_on"]
    assert not server.get("volumes"), server.get("volumes")
    assert env["SENTIFLOW_SERVER_STATE_DIR"] in " ".join(server["tmpfs"])


def test_the_model_servers_schema_is_migrated_once_before_it_starts(resolved):
    """Workers never create tables: a one-shot migration service runs first, on the same
    database URL, and the model server waits for it to exit successfully."""
    services = resolved["services"]
    migrate = services["model-server-migrate"]
    assert migrate["command"] == ["python", "-m", "serving.store.migrate", "upgrade"]
    assert migrate["image"] == services["model-server"]["image"]
    url = "SENTIFLOW_SERVER_FEEDBACK_DB_URL"
    assert service_env(resolved, "model-server-migrate")[url] == service_env(resolved, "model-server")[url]
    wait = services["model-server"]["depends_on"]["model-server-migrate"]
    assert wait["condition"] == "service_completed_successfully"
