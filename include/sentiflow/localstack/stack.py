"""The embedded local stack: real services on 127.0.0.1, no Docker.

``python -m sentiflow.localstack.stack up|down|status|env`` starts SeaweedFS (S3), the MLflow server (SQLite
backend, artifacts proxied to S3) and the model server (gunicorn), each with a PID file and a log file under
the stack home, and waits until each is healthy. ``up`` is idempotent (a live PID file means "already
running"), ``down`` stops only the processes whose PID files it wrote. The test suite uses the same code with
free ports and a temporary home, so parallel test runs never share state.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from sentiflow.localstack.supervisor import (
    HOST,
    REPO_ROOT,
    Service,
    http_ok,
    logfile,
    running_pid,
    start,
    stop,
)
from sentiflow.localstack.supervisor import free_port as free_port  # tests and benchmarks ask the stack
from sentiflow.security import stack_auth
from sentiflow.settings.components import ENV_PREFIX, MLflowSettings, settings_config


class StackSettings(BaseSettings):
    """Where the local stack lives and which ports it binds. Env: ``SENTIFLOW_STACK_*``."""

    model_config = settings_config("STACK_")

    home: Path = Field(default=REPO_ROOT / ".stack", description="PID files, logs, data of the local stack.")
    s3_port: int = Field(default=8333, description="SeaweedFS S3 API port.")
    s3_master_port: int = Field(default=9333, description="SeaweedFS master port (gRPC on +10000).")
    s3_volume_port: int = Field(default=8381, description="SeaweedFS volume port (gRPC on +10000).")
    s3_filer_port: int = Field(default=8888, description="SeaweedFS filer port (gRPC on +10000).")
    s3_admin_port: int = Field(default=23646, description="SeaweedFS admin port (UI off).")
    mlflow_port: int = Field(default=5000, description="MLflow tracking server port.")
    server_port: int = Field(default=8000, description="Model server port.")
    airflow_port: int = Field(default=8080, description="Airflow UI and REST API port (`make airflow`).")
    access_key_id: str = Field(default="sentiflow", description="S3 access key the local S3 server accepts.")
    secret_access_key: str = Field(default="sentiflow-secret", description="S3 secret it accepts.")
    bucket: str = Field(default="sentiflow", description="Bucket created at start.")
    server_token: str = Field(default="sentiflow-local-token", description="Local admin token.")
    reviewer_token: str = Field(
        default="sentiflow-local-reviewer-token", description="Local feedback reviewer token."
    )
    grant_scope: str = Field(default="served", pattern="^(served|all)$", description=stack_auth.SCOPE_DOC)
    start_timeout_s: float = Field(default=120.0, description="Longest wait for a service to become healthy.")

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def server_url(self) -> str:
        return f"http://{HOST}:{self.server_port}"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def stack_on_free_ports(home: Path, start_timeout_s: float = 300.0) -> StackSettings:
    """A stack under ``home`` whose every port is a free one: the tests' and benchmarks' private stacks.

    The default timeout is generous: a loaded 2-core CI box can take minutes to import MLflow.
    """
    ports = {name: free_port() for name, f in StackSettings.model_fields.items() if name.endswith("_port")}
    return StackSettings.model_validate({"home": home, "start_timeout_s": start_timeout_s, **ports})


def client_env(stack: StackSettings) -> dict[str, str]:
    """Environment that points every sentiflow component (and Airflow) at this stack."""
    airflow_home = stack.airflow_home
    aws_conn = {
        "conn_type": "aws",
        "login": stack.access_key_id,
        "password": stack.secret_access_key,
        "extra": {"endpoint_url": stack.s3_endpoint, "region_name": "us-east-1"},
    }
    return {
        **stack_auth.pipeline_env(stack.home),  # its MLflow identity and signing key; the servers' public key
        f"{ENV_PREFIX}S3_ENDPOINT_URL": stack.s3_endpoint,
        f"{ENV_PREFIX}S3_BUCKET": stack.bucket,
        f"{ENV_PREFIX}S3_ACCESS_KEY_ID": stack.access_key_id,
        f"{ENV_PREFIX}S3_SECRET_ACCESS_KEY": stack.secret_access_key,
        f"{ENV_PREFIX}MLFLOW_TRACKING_URI": stack.mlflow_uri,
        f"{ENV_PREFIX}SERVER_URL": stack.server_url,
        f"{ENV_PREFIX}SERVER_ADMIN_TOKEN": stack.server_token,
        f"{ENV_PREFIX}SERVER_REVIEWER_TOKEN": stack.reviewer_token,
        f"{ENV_PREFIX}SERVER_STATE_DIR": str(stack.home / "model-server"),
        "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        # Airflow: its own home, our DAGs, no examples, connections as env vars (no DB writes needed).
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW_CONN_SENTIFLOW_S3": json.dumps(aws_conn),
        "AIRFLOW_CONN_SENTIFLOW_MLFLOW": stack_auth.mlflow_connection(stack.home, stack.mlflow_uri),
        "AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER": json.dumps(
            # the admin token for a release's diagnostics, the reviewer token for the training export
            {
                "conn_type": "http",
                "host": stack.server_url,
                "password": stack.server_token,
                "extra": {"reviewer_token": stack.reviewer_token},
            }
        ),
    }


def server_env(stack: StackSettings) -> dict[str, str]:
    """What a model-server replica of this stack is given, and nothing of the pipeline's: its own read-only
    MLflow identity and object-store key, the public keys it verifies with, where things are. The pipeline's
    identity, signing key and Airflow connections in ``client_env`` are withheld from it."""
    return {
        **stack_auth.model_server_env(stack.home),
        f"{ENV_PREFIX}SERVER_SIGNING_PUBLIC_KEYS": stack_auth.signing_env(stack.home)[
            f"{ENV_PREFIX}SERVER_SIGNING_PUBLIC_KEYS"
        ],
        f"{ENV_PREFIX}S3_ENDPOINT_URL": stack.s3_endpoint,
        f"{ENV_PREFIX}S3_BUCKET": stack.bucket,
        f"{ENV_PREFIX}MLFLOW_TRACKING_URI": stack.mlflow_uri,
        "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        f"{ENV_PREFIX}SERVER_ADMIN_TOKEN": stack.server_token,
        f"{ENV_PREFIX}SERVER_REVIEWER_TOKEN": stack.reviewer_token,
        f"{ENV_PREFIX}SERVER_STATE_DIR": str(stack.home / "model-server"),
        # POST /deploy asks the local Airflow (``make airflow``) for release runs; 503 while it is down
        f"{ENV_PREFIX}SERVER_AIRFLOW_URL": f"http://{HOST}:{stack.airflow_port}",
    }


def _bin(name: str) -> str:
    """A console script of the running interpreter's environment (the venv), falling back to PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def services(stack: StackSettings) -> dict[str, Service]:
    data = stack.home / "data"
    s3_env = {"AWS_ACCESS_KEY_ID": stack.access_key_id, "AWS_SECRET_ACCESS_KEY": stack.secret_access_key}
    weed = Service(
        name="s3",
        argv=[
            _bin("weed"),
            "mini",
            f"-dir={data / 's3'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={stack.s3_port}",
            f"-master.port={stack.s3_master_port}",
            f"-volume.port={stack.s3_volume_port}",
            f"-filer.port={stack.s3_filer_port}",
            f"-admin.port={stack.s3_admin_port}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-bucket={stack.bucket}",
            f"-s3.config={stack_auth.s3_config(stack.home, stack.bucket, *s3_env.values())}",
        ],
        env=s3_env,
        ports=(stack.s3_port, stack.s3_master_port, stack.s3_volume_port, stack.s3_filer_port),
        health=_bucket_ready(stack),
        prepare=lambda: (data / "s3").mkdir(parents=True, exist_ok=True),
    )
    mlflow_dir = data / "mlflow"
    mlflow = Service(
        name="mlflow",
        argv=[
            _bin("mlflow"),
            "server",
            "--host",
            HOST,
            "--port",
            str(stack.mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "--artifacts-destination",
            f"s3://{stack.bucket}/{MLflowSettings().artifacts_prefix}",
            "--allowed-hosts",
            f"{HOST}:{stack.mlflow_port},localhost:{stack.mlflow_port},{HOST},localhost",
            *("--app-name", "basic-auth"),  # stack_auth.provision makes users and grants in up()
        ],
        env={
            **stack_auth.mlflow_server_env(stack.home, mlflow_dir / "auth.db"),
            **stack_auth.s3_env(stack.home, "mlflow-artifacts"),  # its own S3 identity
            "MLFLOW_S3_ENDPOINT_URL": stack.s3_endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            # MLflow 3's server-side job runner (four huey consumers) is unused here; on 2 cores it costs.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        health=http_ok(f"{stack.mlflow_uri}/health"),
        ports=(stack.mlflow_port,),
        prepare=lambda: mlflow_dir.mkdir(parents=True, exist_ok=True),
    )
    model_server = Service(
        name="model-server",
        argv=[
            _bin("gunicorn"),
            "--config",
            str(REPO_ROOT / "serving" / "gunicorn.conf.py"),
            "--bind",
            f"{HOST}:{stack.server_port}",
            "serving.app:create_app()",
        ],
        env=server_env(stack),
        withhold=tuple(sorted(set(client_env(stack)) - set(server_env(stack)))),
        health=http_ok(f"{stack.server_url}/health"),
        ports=(stack.server_port,),
        prepare=lambda: (stack.home / "model-server").mkdir(parents=True, exist_ok=True),
        init=[sys.executable, "-m", "serving.store.migrate", "upgrade"],
    )
    return {s.name: s for s in (weed, mlflow, model_server)}


def _bucket_ready(stack: StackSettings) -> Callable[[], bool]:
    def check() -> bool:
        import boto3
        from botocore.config import Config

        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=stack.s3_endpoint,
                aws_access_key_id=stack.access_key_id,
                aws_secret_access_key=stack.secret_access_key,
                region_name="us-east-1",
                config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
            )
            s3.head_bucket(Bucket=stack.bucket)
            return True
        except Exception:
            return False

    return check


def airflow_init(stack: StackSettings) -> None:
    """Migrate the Airflow metadata DB once (a marker file makes it idempotent and fast to re-run)."""
    marker = stack.airflow_home / ".migrated"
    if marker.exists():
        return
    stack.airflow_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **client_env(stack)}
    subprocess.run([_bin("airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    marker.write_text(time.ctime())


DEFAULT_SERVICES = ("s3", "mlflow", "model-server")


def up(stack: StackSettings, names: Iterable[str] = DEFAULT_SERVICES, *, with_airflow: bool = True) -> None:
    table = services(stack)
    for name in names:
        pid = start(stack, table[name])
        print(f"{name:13s} up (pid {pid}), log {logfile(stack, name)}")
        if name == "mlflow":  # users and grants before anything else talks to it
            stack_auth.provision(stack.home, stack.mlflow_uri, scope=stack.grant_scope)
    if with_airflow:
        airflow_init(stack)
        print(f"airflow       home {stack.airflow_home} (db migrated)")


def down(stack: StackSettings, names: Iterable[str] = DEFAULT_SERVICES) -> None:
    for name in reversed(list(names)):
        if stop(stack, name):
            print(f"{name:13s} stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sentiflow.localstack.stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("services", nargs="*", help=f"subset of {', '.join(DEFAULT_SERVICES)}")
    parser.add_argument("--no-airflow", action="store_true", help="skip the Airflow DB migration on up")
    args = parser.parse_args(argv)
    stack = StackSettings()
    names = args.services or list(DEFAULT_SERVICES)
    if args.command == "up":
        up(stack, names, with_airflow=not args.no_airflow)
    elif args.command == "down":
        down(stack, names)
    elif args.command == "status":
        for name in names:
            pid = running_pid(stack, name)
            print(f"{name:13s} {f'running (pid {pid})' if pid else 'stopped'}")
    else:
        for key, value in client_env(stack).items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
