"""k8s/: MLflow runs on its Postgres with S3 artifacts behind its basic-auth app, the settings ConfigMaps
point at its Service, and the mlflow-init Job makes the users the model server and the pipeline log in as
.
"""

from __future__ import annotations

from tests.integration.deployment.k8s_manifests import K8S, by_kind


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
