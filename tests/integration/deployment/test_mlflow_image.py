"""The MLflow image's start without Docker: its entrypoint, then MLflow's auth app on a real Postgres.

No Docker engine here, so the image's layout is rebuilt in a folder: the files ``docker/mlflow.Dockerfile``
copies to ``/opt/sentiflow`` (checked against the Dockerfile), run with the ``python`` and ``mlflow`` of the
image's install set (``install_set("mlflow")``: a clean venv with only the ``mlflow`` extra, never the
suite's), with compose's ``mlflow`` command and the environment compose gives it (production mode, Postgres
URLs with passwords, the admin from ``.env``). What compose and Kubernetes rely on is checked on the real
thing: placeholders stop it before MLflow starts; the entrypoint writes the auth config and creates the
``mlflow_auth`` database; ``/health`` answers without a login (the healthcheck, the probes) while the API
refuses anonymous requests; the provisioning step makes its users in that database.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.security import mlflow_users
from sentiflow.security.mlflow_auth import MlflowIdentity, client_for
from sentiflow.settings.components import MLflowSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
ADMIN_PASSWORD = "mlflow-admin-7c2e9f"


def image_folder(tmp: Path) -> Path:
    """``/opt/sentiflow`` of the image: what the Dockerfile copies there, from where it copies it."""
    dockerfile = (ROOT / "docker" / "mlflow.Dockerfile").read_text()
    copied = {
        "include/sentiflow/security/credentials_check.py": "credentials_check.py",
        "include/sentiflow/security/mlflow_auth_ini.py": "mlflow_auth_ini.py",
        "docker/mlflow/entrypoint.sh": "entrypoint.sh",
    }
    folder = tmp / "opt-sentiflow"
    folder.mkdir()
    for source, name in copied.items():
        assert source in dockerfile, f"the image no longer copies {source}"
        shutil.copy(ROOT / source, folder / name)
    return folder


def compose_like_env(postgres: str, tmp: Path, bin_dir: Path, **overrides: str) -> dict[str, str]:
    """The variables compose hands the ``mlflow`` service, pointing at this Postgres; ``python`` and
    ``mlflow`` are those of the image's install set (``bin_dir``), as the Dockerfile's ``PATH`` has them."""
    base = postgres.replace("sentiflow@", "sentiflow:pg-password-31d8@").rsplit("/", 1)[0]
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp),
        "SENTIFLOW_ENV": "production",
        "MLFLOW_BACKEND_STORE_URI": f"{base}/mlflow",
        "MLFLOW_AUTH_DATABASE_URI": f"{base}/mlflow_auth",
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp / "auth" / "basic_auth.ini"),  # the Dockerfile's ENV, here
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-key-5a90d1",
        "AWS_SECRET_ACCESS_KEY": "s3-key-unused-here-8e1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **overrides,
    }


def mlflow_command(port: int, artifacts: Path) -> list[str]:
    """Compose's ``mlflow`` command, with local artifacts instead of S3 and one worker."""
    compose = (ROOT / "docker-compose.yaml").read_text()
    assert "--app-name=basic-auth" in compose
    return [
        "mlflow",
        "server",
        "--host=127.0.0.1",
        f"--port={port}",
        "--workers=1",
        f"--artifacts-destination={artifacts.as_uri()}",
        "--serve-artifacts",
        f"--allowed-hosts=127.0.0.1:{port},localhost:{port}",
        "--app-name=basic-auth",
    ]


def databases(postgres: str) -> set[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres)
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT datname FROM pg_database"))}
    finally:
        engine.dispose()


def test_placeholders_stop_the_image_before_mlflow_starts(postgres_url, tmp_path, install_set):
    folder = image_folder(tmp_path)
    env = compose_like_env(
        postgres_url, tmp_path, install_set("mlflow"), MLFLOW_AUTH_ADMIN_PASSWORD="change-me-mlflow-admin"
    )
    done = subprocess.run(
        ["sh", str(folder / "entrypoint.sh"), "echo", "MLflow would start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "MLFLOW_AUTH_ADMIN_PASSWORD is empty or a placeholder" in done.stderr
    assert "MLflow would start" not in done.stdout
    assert not Path(env["MLFLOW_AUTH_CONFIG_PATH"]).exists()


def test_the_image_runs_mlflow_with_its_auth_app_on_postgres(postgres_url, tmp_path, install_set):
    bin_dir = install_set("mlflow")
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:  # compose's postgres init makes `mlflow`; `mlflow_auth` is the image's job
        conn.execute(text("CREATE DATABASE mlflow"))
    engine.dispose()
    assert "mlflow_auth" not in databases(postgres_url)

    folder = image_folder(tmp_path)
    stack = localstack.stack_on_free_ports(tmp_path / "home")  # only for the PID file and the log
    port = localstack.free_port()
    uri = f"http://127.0.0.1:{port}"
    service = supervisor.Service(
        name="mlflow-image",
        argv=["sh", str(folder / "entrypoint.sh"), *mlflow_command(port, tmp_path / "artifacts")],
        env=compose_like_env(postgres_url, tmp_path, bin_dir),
        health=supervisor.http_ok(f"{uri}/health"),
        ports=(port,),
    )
    try:
        supervisor.start(stack, service)
        assert requests.get(f"{uri}/health", timeout=10).status_code == 200  # the healthcheck: no login
        search = f"{uri}/api/2.0/mlflow/registered-models/search"
        assert requests.get(search, timeout=10).status_code == 401
        assert requests.get(search, auth=("admin", ADMIN_PASSWORD), timeout=10).status_code == 200
        ini = Path(service.env["MLFLOW_AUTH_CONFIG_PATH"])
        assert ini.stat().st_mode & 0o777 == 0o600 and "NO_PERMISSIONS" in ini.read_text()
        assert "mlflow_auth" in databases(postgres_url)  # created by the entrypoint

        suffix = uuid.uuid4().hex[:8]
        users = {
            role: MlflowIdentity(f"{role}-{suffix}", SecretStr(uuid.uuid4().hex))
            for role in mlflow_users.ROLES
        }
        settings = MLflowSettings(experiment_name=f"image-{suffix}", registered_model_name=f"image-{suffix}")
        admin = MlflowIdentity("admin", SecretStr(ADMIN_PASSWORD))
        mlflow_users.provision(uri, admin, users, settings)
        server = client_for(uri, users["server"])
        assert (
            server.get_registered_model(settings.registered_model_name).name == settings.registered_model_name
        )
        auth_db = create_engine(service.env["MLFLOW_AUTH_DATABASE_URI"])
        with auth_db.connect() as conn:
            names = {row[0] for row in conn.execute(text("SELECT username FROM users"))}
        auth_db.dispose()
        assert {u.username for u in users.values()} | {"admin"} <= names
    finally:
        supervisor.stop(stack, "mlflow-image")
