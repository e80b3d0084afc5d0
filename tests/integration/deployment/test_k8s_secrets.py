"""k8s/: every Secret key the manifests read is in secret.template.yaml (with no real secret in it) and is
created by the `kubectl create secret` commands of docs/deployment.md, parsed as the shell reads them; the
ConfigMap's names are library settings; the Airflow chart's Secrets carry the keys it reads, and the drift
hash key the model server hashes with; each secret reaches only the pods that use it (docs/security.md).
"""

from __future__ import annotations

import shlex

import yaml

from tests.integration.deployment.k8s_manifests import (
    K8S,
    _walk,
    by_kind,
    documented_secrets,
    manifests,
    secret_refs,
)


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
