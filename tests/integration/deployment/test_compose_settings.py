"""docker-compose.yaml and .env.example agree with the library: every SENTIFLOW_* name is a settings field,
each service's environment parses in the settings classes, endpoints, ports and the bucket agree across
services and images, every compose variable is documented in .env.example (which holds no secret), and
docker/init-env.sh generates secrets that resolve.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from tests.integration.deployment.compose_file import (
    COMPOSE,
    DOCKER,
    ENV_EXAMPLE,
    _final_cmd,
    compose_config,
    env_file_values,
    published,
    service_env,
    settings_classes,
    settings_env_names,
)


# --- names and values agree with the library ----------------------------------------------------------
def test_every_sentiflow_name_is_a_library_setting(raw):
    known = settings_env_names()
    used = set(re.findall(r"\bSENTIFLOW_[A-Z0-9_]+", COMPOSE.read_text())) | {
        k for k in env_file_values(ENV_EXAMPLE) if k.startswith("SENTIFLOW_")
    }
    unknown = sorted(used - set(known))
    assert not unknown, f"not a field of any settings class: {unknown}"


def test_settings_parse_from_each_services_env(resolved, monkeypatch):
    """What compose hands a container is what the library's settings classes accept."""
    for service in ("model-server", "airflow-scheduler", "airflow-init", "s3-init"):
        env = service_env(resolved, service)
        for key in [k for k in os.environ if k.startswith("SENTIFLOW_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for cls in settings_classes():
            cls()  # raises on a value of the wrong type


def test_endpoints_ports_and_bucket_agree(resolved):
    from sentiflow.settings.components import MLflowSettings, S3Settings

    services = resolved["services"]
    env = service_env(resolved, "model-server")
    defaults = env_file_values(ENV_EXAMPLE)

    s3 = urlparse(env["SENTIFLOW_S3_ENDPOINT_URL"])
    assert s3.hostname == "seaweedfs"
    assert f"-s3.port={s3.port}" in services["seaweedfs"]["command"]
    init_env = services["s3-init"]["environment"]
    assert init_env["SENTIFLOW_S3_ENDPOINT_URL"] == env["SENTIFLOW_S3_ENDPOINT_URL"]

    bucket = env["SENTIFLOW_S3_BUCKET"]
    assert bucket == defaults["SENTIFLOW_S3_BUCKET"]
    assert init_env["SENTIFLOW_S3_BUCKET"] == bucket
    # SeaweedFS reads the identities file s3-init writes, on the volume they share
    identities = init_env["S3_IDENTITIES_FILE"]
    assert f"-s3.config=/etc/seaweedfs/{Path(identities).name}" in services["seaweedfs"]["command"]
    assert any(str(v).startswith("seaweedfs-config:/etc/seaweedfs") for v in services["seaweedfs"]["volumes"])
    assert any(str(v).startswith("seaweedfs-config:") for v in services["s3-init"]["volumes"])
    mlflow_cmd = services["mlflow"]["command"]
    prefix = MLflowSettings.model_fields["artifacts_prefix"].default
    assert f"--artifacts-destination=s3://{bucket}/{prefix}" in mlflow_cmd
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == env["SENTIFLOW_S3_ENDPOINT_URL"]
    # MLflow has its own S3 identity, one of those s3-init writes
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] == init_env["S3_MLFLOW_ACCESS_KEY"]
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] != env["SENTIFLOW_S3_ACCESS_KEY_ID"]
    # and so has the model server (artifacts read, production samples written): not the pipeline's
    assert env["SENTIFLOW_S3_ACCESS_KEY_ID"] == init_env["S3_MODEL_SERVER_ACCESS_KEY"]
    assert env["SENTIFLOW_S3_ACCESS_KEY_ID"] != init_env["SENTIFLOW_S3_ACCESS_KEY_ID"]

    tracking = urlparse(env["SENTIFLOW_MLFLOW_TRACKING_URI"])
    assert tracking.hostname == "mlflow"
    assert f"--port={tracking.port}" in mlflow_cmd
    assert any(f"mlflow:{tracking.port}" in arg for arg in mlflow_cmd if arg.startswith("--allowed-hosts="))
    # docker-compose 1.29 writes a port with a host address as a string: "127.0.0.1:5000:5000"
    targets = {
        p["target"] if isinstance(p, dict) else int(str(p).rsplit(":", 1)[1].split("/")[0])
        for p in services["mlflow"]["ports"]
    }
    assert targets == {tracking.port}

    server = urlparse(env["SENTIFLOW_SERVER_URL"])
    assert server.hostname == "model-server"
    assert {p.target for p in published(services["model-server"])} == {server.port}
    assert f"0.0.0.0:{server.port}" in _final_cmd(DOCKER / "serving.Dockerfile")
    assert str(server.port) in json.dumps(services["model-server"]["healthcheck"]["test"])

    # Every Airflow component and the model server see the same library settings (the server's own key aside).
    own_key = ("SENTIFLOW_S3_ACCESS_KEY_ID", "SENTIFLOW_S3_SECRET_ACCESS_KEY")
    shared = {
        k: v
        for k, v in env.items()
        if k.startswith(("SENTIFLOW_S3_", "SENTIFLOW_MLFLOW_")) and k not in own_key
    }
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-init"):
        airflow_env = service_env(resolved, name)
        assert {k: airflow_env.get(k) for k in shared} == shared, name
    assert S3Settings.model_fields["bucket"].default == bucket  # the local stack's bucket, too


def test_every_compose_variable_is_documented_in_env_example():
    # $${X} is the container's own variable, not compose's.
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(env_file_values(ENV_EXAMPLE))
    assert referenced - documented == set()
    assert documented - referenced <= {"COMPOSE_PROJECT_NAME"}


def test_env_example_holds_no_secrets():
    for key, value in env_file_values(ENV_EXAMPLE).items():
        if re.search(r"PASSWORD|SECRET|TOKEN|FERNET|PRIVATE_KEY", key):
            assert value.startswith("change-me"), f"{key} must be a change-me placeholder in .env.example"


def test_init_env_generates_secrets_that_resolve(tmp_path):
    from cryptography.fernet import Fernet

    out = tmp_path / ".env"
    run = subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    values = env_file_values(out)
    assert not [k for k, v in values.items() if "change-me" in v]  # the signing keys: test_signing_keys.py
    assert set(values) == set(env_file_values(ENV_EXAMPLE))
    Fernet(values["AIRFLOW_FERNET_KEY"].encode())  # a valid key, or this raises
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert compose_config(out).returncode == 0
    again = subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr
