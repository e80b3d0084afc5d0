"""Each image's install set runs its component's command from compose against real local services.

The suite's own ``.venv`` has every package of every component, so it cannot show that an image lacks one:
these tests install exactly what each Dockerfile installs into a clean venv (``install_sets.build``, one per
extra and session) and start the commands of docker-compose.yaml from it, with the image's runtime layout
(``serving/`` on ``PYTHONPATH``, as at ``/app``). A package missing from an extra fails here, at import or
at start. The MLflow image's install set runs its auth app in test_mlflow_image.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
import requests
import yaml

from sentiflow import localstack, stack_auth, supervisor
from sentiflow.localstack import StackSettings
from tests.integration.deploy.compose_file import COMPOSE, DOCKER, _final_cmd

ROOT = Path(__file__).resolve().parents[3]
#: The image each compose service runs -> the extra its Dockerfile installs (third-party images: None).
IMAGE_EXTRAS = {"model-server": "serve", "airflow": "airflow", "mlflow": "mlflow"}


def service_image(service: dict) -> str | None:
    """``serve``/``airflow``/``mlflow`` for the project's images, None for third-party ones."""
    image = str(service.get("image", ""))
    for name, extra in IMAGE_EXTRAS.items():
        if image.endswith(f"/{name}:${{IMAGE_TAG:-0.1.0}}"):
            return extra
    return None


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``/app`` of the model-server image: ``serving/`` and nothing else of the repository."""
    app = tmp_path_factory.mktemp("app")
    shutil.copytree(ROOT / "serving", app / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    return app


def image_env(bin_dir: Path, app: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    if app is not None:
        env["PYTHONPATH"] = str(app)  # the Dockerfile's ENV PYTHONPATH=/app
    env.update(extra)
    return env


def run_in(env: dict[str, str], argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_compose_commands_exist_in_their_images_install_sets(install_set, app_dir) -> None:
    """Every command of docker-compose.yaml (or its image's CMD) names a console script of the image's
    install set, or a module it can import (``python -m X``)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    checked = []
    for name, service in services.items():
        extra = service_image(service)
        if extra not in ("serve",):  # airflow: test_airflow_parses_the_dags; mlflow: test_mlflow_image.py
            continue
        command = service.get("command") or shlex.split(_final_cmd(DOCKER / "serving.Dockerfile"))
        if isinstance(command, str):
            command = shlex.split(command)
        bin_dir = install_set(extra)
        assert (bin_dir / command[0]).exists(), f"{name}: {command[0]} is not in the {extra} install set"
        if command[:2] == ["python", "-m"]:
            found = run_in(image_env(bin_dir, app_dir), ["python", "-c", f"import {command[2]}"], cwd=app_dir)
            assert found.returncode == 0, f"{name}: {command[2]} does not import: {found.stderr[-2000:]}"
        checked.append(name)
    assert {"model-server", "model-server-migrate", "mlflow-init", "s3-init"} <= set(checked)


def test_model_server_image_migrates_boots_and_serves(
    install_set, app_dir: Path, stack: StackSettings, postgres, tmp_path: Path
) -> None:
    bin_dir = install_set("serve")
    db = postgres.new_database().replace("postgresql://", "postgresql+psycopg2://", 1)
    env = image_env(
        bin_dir,
        app_dir,
        **{
            **localstack.client_env(stack),
            **stack_auth.model_server_env(stack.home),
            "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db,
            "SENTIFLOW_SERVER_STATE_DIR": str(tmp_path / "state"),
            "SENTIFLOW_SERVER_WORKERS": "1",
        },
    )
    # model-server-migrate: compose's command, then its healthcheck's
    migrate = yaml.safe_load(COMPOSE.read_text())["services"]["model-server-migrate"]
    done = run_in(env, migrate["command"], cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_in(env, migrate["healthcheck"]["test"][1:], cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]

    # the image's CMD: gunicorn with the app factory, bound here to a free loopback port
    port = localstack.free_port()
    argv = shlex.split(_final_cmd(DOCKER / "serving.Dockerfile"))
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}"
    service = supervisor.Service(
        name="model-server-image",
        argv=[str(bin_dir / argv[0]), *argv[1:]],
        env=env,
        cwd=app_dir,
        health=supervisor.http_ok(f"{url}/health"),
        ports=(port,),
    )
    home = localstack.stack_on_free_ports(tmp_path / "home")  # only its PID file and log
    try:
        supervisor.start(home, service)
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        answer = requests.post(f"{url}/predict", json={"text": "a fine film"}, timeout=30)
        # no version carries the alias in this stack: a documented JSON answer, not a crash
        assert answer.status_code in (200, 503), answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
        assert requests.get(f"{url}/openapi.json", timeout=10).status_code == 200  # apispec
    finally:
        supervisor.stop(home, "model-server-image")


def test_one_shots_of_the_model_server_image(install_set, app_dir, stack: StackSettings, tmp_path) -> None:
    """s3-init writes SeaweedFS's identities and makes the bucket; mlflow-init provisions MLflow's users."""
    bin_dir = install_set("serve")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    bucket = "compose-bucket"
    identities = tmp_path / "s3-config" / "s3.json"
    env = image_env(
        bin_dir,
        app_dir,
        SENTIFLOW_ENV="production",
        SENTIFLOW_S3_ENDPOINT_URL=stack.s3_endpoint,
        SENTIFLOW_S3_BUCKET=bucket,
        S3_IDENTITIES_FILE=str(identities),
        S3_ADMIN_ACCESS_KEY=stack.access_key_id,
        S3_ADMIN_SECRET_KEY="stack-admin-key-is-not-a-placeholder",
        SENTIFLOW_S3_ACCESS_KEY_ID="sentiflow",
        SENTIFLOW_S3_SECRET_ACCESS_KEY="pipeline-7a1c2e",
        S3_MLFLOW_ACCESS_KEY="sentiflow-mlflow",
        S3_MLFLOW_SECRET_KEY="mlflow-3b9d4f",
        S3_READER_ACCESS_KEY="sentiflow-reader",
        S3_READER_SECRET_KEY="reader-5c0e6a",
    )
    command = services["s3-init"]["command"]
    env["S3_ADMIN_SECRET_KEY"] = stack.secret_access_key
    placeholder = run_in({**env, "S3_READER_SECRET_KEY": "change-me-s3-reader"}, command, cwd=app_dir)
    assert placeholder.returncode == 1 and "S3_READER_SECRET_KEY" in placeholder.stderr
    env["SENTIFLOW_ENV"] = "development"  # the local stack's admin secret is a well-known local default
    done = run_in(env, command, cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(identities.read_text())
    assert {i["name"] for i in document["identities"]} == {
        "stack-admin",
        "pipeline",
        "mlflow-artifacts",
        "reader",
    }
    assert identities.stat().st_mode & 0o777 == 0o640
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=stack.access_key_id,
        aws_secret_access_key=stack.secret_access_key,
        region_name="us-east-1",
    )
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert run_in(env, command, cwd=app_dir).returncode == 0  # idempotent

    admin = stack_auth.admin(stack.home).password.get_secret_value()
    users = {
        role: stack_auth.identity(stack.home, role).password.get_secret_value() for role in stack_auth.ROLES
    }
    provision = image_env(
        bin_dir,
        app_dir,
        SENTIFLOW_ENV="production",
        SENTIFLOW_MLFLOW_TRACKING_URI=stack.mlflow_uri,
        SENTIFLOW_MLFLOW_AUTH_ADMIN_USERNAME="admin",
        SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD=admin,
        **{f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_PASSWORD": pw for role, pw in users.items()},
        **{f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_USERNAME": n for role, n in stack_auth.ROLES.items()},
    )
    done = run_in(provision, services["mlflow-init"]["command"], cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_trainer_image_runs_its_entrypoint(install_set) -> None:
    """The trainer image's CMD (``python -m sentiflow.train --help``) imports the training stack."""
    bin_dir = install_set("train")
    argv = shlex.split(_final_cmd(DOCKER / "trainer.Dockerfile"))
    done = run_in(image_env(bin_dir), argv)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_in(
        image_env(bin_dir), ["python", "-c", "import sentiflow.train.transformer_fit, pynvml, scipy"]
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_airflow_image_parses_the_dags(install_set, tmp_path: Path) -> None:
    """The Airflow image's install set imports every DAG and plugin without an import error."""
    bin_dir = install_set("airflow")
    env = image_env(
        bin_dir,
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}",
    )
    script = (
        "from airflow.models.dagbag import DagBag; import json; "
        f"b = DagBag({str(ROOT / 'dags')!r}, include_examples=False); "
        "errors = {k: v[-500:] for k, v in b.import_errors.items()}; "
        "print(json.dumps({'dags': sorted(b.dag_ids), 'errors': errors}))"
    )
    done = run_in(env, ["python", "-c", script])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["errors"], result["errors"]
    assert result["dags"], "no DAG parsed"
    for command in ("airflow", "celery"):  # compose's commands run through the official entrypoint
        assert (bin_dir / command).exists(), command
