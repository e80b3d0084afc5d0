"""The embedded local stack: real services on 127.0.0.1, no Docker.

``python -m sentiflow.localstack up|down|status|env`` starts SeaweedFS (S3), the MLflow server (SQLite
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
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentiflow import stack_auth
from sentiflow.config import ENV_PREFIX, MLflowSettings
from sentiflow.ports import HOST, port_in_use

# free_port is re-exported: tests and benchmarks ask the stack for ports
from sentiflow.ports import free_port as free_port
from sentiflow.processes import pid_alive, wait_group_gone

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackSettings(BaseSettings):
    """Where the local stack lives and which ports it binds. Env: ``SENTIFLOW_STACK_*``."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}STACK_", extra="ignore")

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
            {"conn_type": "http", "host": stack.server_url, "password": stack.server_token}
        ),
    }


@dataclass
class Service:
    name: str
    argv: list[str]
    health: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    prepare: Callable[[], None] | None = None
    #: Ports the service binds; all must be free before we start it, or we would adopt a stranger.
    ports: tuple[int, ...] = ()
    #: A one-shot step run to completion, with the service's environment, before the service starts: the
    #: model server's schema migrations (its workers never create tables; compose and k8s run the same
    #: command as a one-shot service / init container).
    init: list[str] | None = None


def http_ok(url: str) -> Callable[[], bool]:
    """A health check: ``url`` answers with any status below 500."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return 200 <= response.status < 500
        except Exception:
            return False

    return check


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
            *("--app-name", "basic-auth"),  # issue 20: stack_auth.provision makes users and grants in up()
        ],
        env={
            **stack_auth.mlflow_server_env(stack.home, mlflow_dir / "auth.db"),
            **stack_auth.s3_env(stack.home, "mlflow-artifacts"),  # its own S3 identity (issue 20)
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
        env={**client_env(stack), **stack_auth.model_server_env(stack.home)},
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


# --- process management ---------------------------------------------------------------------------
def _pidfile(stack: StackSettings, name: str) -> Path:
    return stack.home / "run" / f"{name}.pid"


def _logfile(stack: StackSettings, name: str) -> Path:
    return stack.home / "logs" / f"{name}.log"


def running_pid(stack: StackSettings, name: str) -> int | None:
    pidfile = _pidfile(stack, name)
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        return None
    return pid if pid_alive(pid) else None


def start(stack: StackSettings, service: Service) -> int:
    """Start one service unless its PID file names a live process; wait until it is healthy."""
    pid = running_pid(stack, service.name)
    if pid is not None and service.health():
        return pid
    busy = [port for port in service.ports if port_in_use(port)]
    if busy:
        raise RuntimeError(
            f"cannot start {service.name}: port(s) {busy} on {HOST} are already in use by a process "
            f"this stack did not start (no live PID file under {stack.home / 'run'}). Stop it, or choose "
            f"other ports with SENTIFLOW_STACK_*_PORT."
        )
    if service.prepare:
        service.prepare()
    log = _logfile(stack, service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    _pidfile(stack, service.name).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **service.env}
    if service.init:
        _run_init(service, env, log)
    with log.open("ab") as out:
        out.write(f"\n=== {time.ctime()} starting: {shlex.join(service.argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            service.argv,
            cwd=service.cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so `down` stops it and its children
        )
    _pidfile(stack, service.name).write_text(str(proc.pid))
    deadline = time.monotonic() + stack.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with code {proc.returncode} during start; log {log}:\n{_tail(log)}"
            )
        if service.health():
            return proc.pid
        time.sleep(0.5)
    stop(stack, service.name)
    raise RuntimeError(
        f"{service.name} not healthy after {stack.start_timeout_s:.0f}s; log {log}:\n{_tail(log)}"
    )


def _run_init(service: Service, env: dict[str, str], log: Path) -> None:
    """The service's one-shot step (``Service.init``), its output appended to the service's log."""
    assert service.init is not None
    with log.open("ab") as out:
        out.write(f"\n=== {time.ctime()} {service.name} init: {shlex.join(service.init)}\n".encode())
        out.flush()
        done = subprocess.run(
            service.init, cwd=service.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"{service.name}'s init step `{shlex.join(service.init)}` exited with code {done.returncode}; "
            f"log {log}:\n{_tail(log)}"
        )


def stop(stack: StackSettings, name: str, timeout_s: float = 15.0) -> bool:
    """Stop the process group we started for ``name`` (SIGTERM, then SIGKILL); remove its PID file."""
    pidfile = _pidfile(stack, name)
    pid = running_pid(stack, name)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not wait_group_gone(pid, timeout_s, poll_s=0.2):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_group_gone(pid, 5)
    pidfile.unlink(missing_ok=True)
    return pid is not None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
        print(f"{name:13s} up (pid {pid}), log {_logfile(stack, name)}")
        if name == "mlflow":  # users and grants (issue 20) before anything else talks to it
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
        prog="python -m sentiflow.localstack", description=__doc__.split("\n")[0]
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
