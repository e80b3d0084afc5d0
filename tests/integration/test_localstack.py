"""The local stack manager: idempotent up, PID-file based down, refuses ports it does not own."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import StackSettings
from sentiflow.localstack.supervisor import pid_alive


def test_up_is_idempotent_and_env_points_at_the_stack(stack: StackSettings):
    pid_before = supervisor.running_pid(stack, "mlflow")
    localstack.up(stack, ["s3", "mlflow"], with_airflow=False)  # already running: nothing restarted
    assert supervisor.running_pid(stack, "mlflow") == pid_before
    env = localstack.client_env(stack)
    assert env["SENTIFLOW_S3_ENDPOINT_URL"] == f"http://127.0.0.1:{stack.s3_port}"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert '"endpoint_url"' in env["AIRFLOW_CONN_SENTIFLOW_S3"]


def test_the_model_server_gets_none_of_the_pipelines_secrets(stack: StackSettings):
    """Started from a process that holds the pipeline's identity (this session's environment, as after
    ``eval "$(make -s env)"``), a replica still runs with only its own: no pipeline MLflow password,
    signing key, admin S3 key or Airflow connection. (gunicorn's process title overwrites
    ``/proc/<pid>/environ``, so the environment is read where the supervisor builds it.)"""
    import os

    from sentiflow.security import stack_auth

    assert os.environ["SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"]  # the parent holds them...
    env = supervisor.service_env(localstack.services(stack)["model-server"])
    pipeline_password = stack_auth.identity(stack.home, "pipeline").password.get_secret_value()
    leaked = sorted(
        k
        for k, v in env.items()
        if pipeline_password in v or stack.secret_access_key in v or k.startswith("AIRFLOW_CONN_")
    )
    assert not leaked, leaked  # ...the server does not
    assert "SENTIFLOW_SIGNING_PRIVATE_KEY_PATH" not in env
    assert env["MLFLOW_TRACKING_USERNAME"] == stack_auth.ROLES["server"]
    assert env["SENTIFLOW_S3_ACCESS_KEY_ID"] != stack.access_key_id
    assert env["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"] == os.environ["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"]


def test_refuses_a_port_held_by_a_stranger(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = StackSettings(home=tmp_path, mlflow_port=port, start_timeout_s=5)
        with pytest.raises(RuntimeError, match=rf"port\(s\) \[{port}\].*already in use"):
            supervisor.start(settings, localstack.services(settings)["mlflow"])
    assert supervisor.running_pid(settings, "mlflow") is None


def test_down_stops_only_what_it_started(tmp_path):
    settings = StackSettings(home=tmp_path / "mine", start_timeout_s=60)
    port = localstack.free_port()
    own = supervisor.Service(
        name="model-server",
        argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        health=supervisor.http_ok(f"http://127.0.0.1:{port}/"),
        ports=(port,),
    )
    own_pid = supervisor.start(settings, own)
    # a process this stack did not start, named by another stack home's PID file
    foreign = subprocess.Popen(["sleep", "300"], start_new_session=True)
    other = StackSettings(home=tmp_path / "other")
    supervisor.pidfile(other, "mlflow").parent.mkdir(parents=True)
    supervisor.pidfile(other, "mlflow").write_text(str(foreign.pid))
    try:
        localstack.down(settings, ["s3", "mlflow", "model-server"])  # s3, mlflow: no PID file here
        assert not pid_alive(own_pid) and not supervisor.pidfile(settings, "model-server").exists()
        assert foreign.poll() is None  # still running
        assert supervisor.running_pid(other, "mlflow") == foreign.pid  # its PID file untouched
        assert supervisor.stop(settings, "mlflow") is False  # no PID file: nothing to stop, nothing killed
    finally:
        foreign.kill()
        foreign.wait(10)
        supervisor.stop(settings, "model-server")


def test_mlflow_keeps_artifacts_under_the_configured_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIFLOW_MLFLOW_ARTIFACTS_PREFIX", "team-a/artifacts")
    settings = StackSettings(home=tmp_path)
    argv = localstack.services(settings)["mlflow"].argv
    assert argv[argv.index("--artifacts-destination") + 1] == f"s3://{settings.bucket}/team-a/artifacts"
