"""The Airflow image's init and entrypoint: the connections airflow-init builds from the settings load in
Airflow's own loader and agree with them, and the train backend follows the mounted kubeconfig.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.deployment.compose_file import DOCKER, ROOT, service_env


# --- the Airflow image's init and entrypoint ----------------------------------------------------------
def test_airflow_connections_built_from_settings_load_in_airflow(resolved, monkeypatch, tmp_path):
    """airflow-init's connections file goes through Airflow's own loader and agrees with the settings."""
    from airflow.secrets.local_filesystem import load_connections_dict

    from sentiflow.localstack.stack import StackSettings, client_env

    env = {k: v for k, v in service_env(resolved, "airflow-init").items() if k.startswith("SENTIFLOW_")}
    for key in [k for k in os.environ if k.startswith("SENTIFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():  # only ours: the placeholder Fernet key must not reach Airflow's config
        monkeypatch.setenv(key, value)
    out = subprocess.run(
        [sys.executable, str(DOCKER / "airflow" / "connections.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "include")},
        check=True,
    )
    path = tmp_path / "conns.json"
    path.write_text(out.stdout)
    conns = load_connections_dict(str(path))

    local_ids = {
        k.removeprefix("AIRFLOW_CONN_").lower()
        for k in client_env(StackSettings())
        if k.startswith("AIRFLOW_CONN_")
    }
    assert set(conns) == local_ids == {"sentiflow_s3", "sentiflow_mlflow", "sentiflow_model_server"}
    s3 = conns["sentiflow_s3"]
    assert s3.conn_type == "aws"
    assert s3.login == env["SENTIFLOW_S3_ACCESS_KEY_ID"]
    assert s3.password == env["SENTIFLOW_S3_SECRET_ACCESS_KEY"]
    assert s3.extra_dejson["endpoint_url"] == env["SENTIFLOW_S3_ENDPOINT_URL"]
    mlflow = conns["sentiflow_mlflow"]
    assert mlflow.host == env["SENTIFLOW_MLFLOW_TRACKING_URI"]
    # the pipeline's MLflow identity, which every task authenticates as
    assert (mlflow.login, mlflow.password) == (
        env["SENTIFLOW_MLFLOW_USERNAME"],
        env["SENTIFLOW_MLFLOW_PASSWORD"],
    )
    server = conns["sentiflow_model_server"]
    assert (server.conn_type, server.host, server.password) == (
        "http",
        env["SENTIFLOW_SERVER_URL"],
        env["SENTIFLOW_SERVER_ADMIN_TOKEN"],  # a release's diagnostics: why a replica could not load it
    )
    # the training export of reviewed feedback
    assert server.extra_dejson["reviewer_token"] == env["SENTIFLOW_SERVER_REVIEWER_TOKEN"]


@pytest.mark.parametrize(
    ("kubeconfig", "in_cluster", "preset", "expected"),
    [
        (True, False, None, "kubernetes"),
        (False, True, None, "kubernetes"),
        (False, False, None, "local"),
        (True, False, "local", "local"),
    ],
)
def test_train_backend_follows_the_mounted_kubeconfig(tmp_path, kubeconfig, in_cluster, preset, expected):
    mount = tmp_path / "config"
    if kubeconfig:
        mount.write_text("apiVersion: v1\nkind: Config\n")
    env = {"PATH": os.environ["PATH"], "KUBECONFIG_MOUNT": str(mount)}
    if in_cluster:
        env["KUBERNETES_SERVICE_HOST"] = "10.0.0.1"
    if preset:
        env["SENTIFLOW_PIPELINE_TRAIN_BACKEND"] = preset
    select = DOCKER / "airflow" / "select-backend.sh"
    script = f'source {select}; echo "$SENTIFLOW_PIPELINE_TRAIN_BACKEND|${{KUBECONFIG:-}}"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    backend, kubeconfig_env = out.strip().split("|")
    assert backend == expected
    assert kubeconfig_env == (str(mount) if expected == "kubernetes" and kubeconfig and not preset else "")


def test_the_model_server_asks_airflow_for_releases_as_its_own_user(resolved):
    """POST /deploy triggers the release DAG as the user airflow-init makes for it (role User), not as the
    admin; the server reaches the API server inside the compose network."""
    server = service_env(resolved, "model-server")
    init = service_env(resolved, "airflow-init")
    assert server["SENTIFLOW_SERVER_AIRFLOW_URL"] == "http://airflow-apiserver:8080"
    assert (server["SENTIFLOW_SERVER_AIRFLOW_USERNAME"], server["SENTIFLOW_SERVER_AIRFLOW_PASSWORD"]) == (
        init["AIRFLOW_RELEASER_USERNAME"],
        init["AIRFLOW_RELEASER_PASSWORD"],
    )
    assert server["SENTIFLOW_SERVER_AIRFLOW_USERNAME"] != init["_AIRFLOW_WWW_USER_USERNAME"]
    assert server["SENTIFLOW_SERVER_AIRFLOW_PASSWORD"] != init["_AIRFLOW_WWW_USER_PASSWORD"]
    entrypoint = (DOCKER / "airflow" / "entrypoint.sh").read_text()
    assert '--username "$releaser"' in entrypoint and "--role User" in entrypoint
