"""One Airflow for every Airflow test: ``make airflow``'s command on the session stack, started once.

``python -m sentiflow.localstack.airflow_standalone up`` runs in a child process as a new user runs it: the
venv's ``bin``
not on ``PATH`` (a bare ``airflow standalone`` fails there with ``FileNotFoundError: 'airflow'``), the Hub
unreachable (``HF_HUB_OFFLINE=1``), none of this process's ``SENTIFLOW_*``, ``MLFLOW_*`` or ``AIRFLOW*``
variables. Its ``SENTIFLOW_STACK_*`` settings are the session stack's (home, ports, grant scope), so it finds
S3 and MLflow already running, as ``make up`` leaves them, starts the model server, migrates Airflow's DB
and runs ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor, SQLite).

What the tests add to a new user's environment, each for a reason of their own:
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` adds a ``viewer`` (the REST tests' 403); one api-server
worker, a parallelism of 4 and a 2 s scheduler heartbeat keep a 2-core machine responsive; the log
servers' fixed ports are free ones, so a parallel session cannot collide; 150-row snapshot parts make the
scheduler run's ``clean`` a mapped task of several instances.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from sentiflow.localstack import supervisor
from sentiflow.localstack.airflow_standalone import PASSWORDS_FILE, SERVICE
from sentiflow.localstack.stack import StackSettings, free_port
from sentiflow.localstack.supervisor import group_members, port_in_use

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "sentiment_pipeline"
HTTP_TIMEOUT_S = 60.0
#: Importing Airflow in each of standalone's components and parsing the DAGs takes minutes on a busy box.
UP_TIMEOUT_S = 1200.0
PARSE_TIMEOUT_S = 600.0
DOWN_TIMEOUT_S = 300.0
#: Snapshot parts of this many rows: the scheduler run's 300 training rows are two parts, validation and
#: test one each, so its clean runs as four mapped task instances.
PART_ROWS = 150
USERS = "admin:admin,viewer:viewer"


def new_user_env(stack: StackSettings) -> dict[str, str]:
    """The environment of ``make airflow`` in a new user's shell, pointed at ``stack``'s home and ports."""
    venv_bin = str(Path(sys.executable).parent)
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SENTIFLOW_", "MLFLOW_"))
    }
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    # every setting of the stack (home, ports, credentials, grant scope): up finds its services running
    settings = {
        f"SENTIFLOW_STACK_{name.upper()}": str(getattr(stack, name)) for name in StackSettings.model_fields
    }
    return {
        **inherited,
        "PATH": path or "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        **settings,
        "SENTIFLOW_STACK_START_TIMEOUT_S": "600",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "SENTIFLOW_DATA_PART_ROWS": str(PART_ROWS),
    }


def run_module(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m <args>`` from the repository root, as ``make`` runs it."""
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def output(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@dataclass(frozen=True)
class LocalAirflow:
    """The running ``make airflow`` deployment and what ``up`` printed and served when it came up."""

    stack: StackSettings
    env: dict[str, str]
    up: subprocess.CompletedProcess
    url: str
    password: str
    pid: int
    #: ``GET /dags/sentiment_pipeline``, ``.../details`` and ``/monitor/health`` when the DAG first appeared.
    dag_at_start: dict
    details_at_start: dict
    health_at_start: dict

    @property
    def home(self) -> Path:
        return self.stack.airflow_home

    def token(self, username: str) -> str:
        """A JWT from ``POST /auth/token`` with the password the simple auth manager generated."""
        passwords = json.loads((self.home / PASSWORDS_FILE).read_text())
        response = requests.post(
            f"{self.url}/auth/token",
            json={"username": username, "password": passwords[username]},
            timeout=HTTP_TIMEOUT_S,
        )
        assert response.status_code == 201, response.text
        return response.json()["access_token"]

    def session(self, username: str = "admin") -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.token(username)}"
        return s

    def runs(self, session: requests.Session) -> list[dict]:
        response = session.get(f"{self.url}/api/v2/dags/{DAG_ID}/dagRuns", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]


def up(stack: StackSettings) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    env = new_user_env(stack)
    return env, run_module(["sentiflow.localstack.airflow_standalone", "up"], env, UP_TIMEOUT_S)


def came_up(stack: StackSettings, env: dict[str, str], started: subprocess.CompletedProcess) -> LocalAirflow:
    """What ``up`` printed, logged in with its password, once the dag-processor has put the DAG in the DB."""
    assert started.returncode == 0, output(started)
    found = re.search(r"Airflow UI: (http://\S+)\s+user: admin\s+password: (\S+)", started.stdout)
    assert found, started.stdout
    url, password = found.groups()
    login = requests.post(
        f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=HTTP_TIMEOUT_S
    )
    assert login.status_code == 201, login.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    deadline = time.monotonic() + PARSE_TIMEOUT_S
    dag_url = f"{url}/api/v2/dags/{DAG_ID}"
    while (dag := session.get(dag_url, timeout=HTTP_TIMEOUT_S)).status_code != 200:
        assert time.monotonic() < deadline, f"DAG not parsed: {dag.status_code} {dag.text[:300]}"
        time.sleep(3)
    details = session.get(f"{dag_url}/details", timeout=HTTP_TIMEOUT_S)
    assert details.status_code == 200, details.text
    health = session.get(f"{url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT_S)
    assert health.status_code == 200, health.text
    pid = supervisor.running_pid(stack, SERVICE)
    assert pid is not None, f"no live {SERVICE} PID file under {stack.home / 'run'}"
    return LocalAirflow(
        stack=stack,
        env=env,
        up=started,
        url=url,
        password=password,
        pid=pid,
        dag_at_start=dag.json(),
        details_at_start=details.json(),
        health_at_start=health.json(),
    )


def down(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``make down`` for what ``up`` started here: Airflow, then the model server. S3 and MLflow stay up:
    they are the session stack's, which the rest of the session uses."""
    stopped = run_module(["sentiflow.localstack.airflow_standalone", "down"], env, DOWN_TIMEOUT_S)
    server = run_module(["sentiflow.localstack.stack", "down", "model-server"], env, DOWN_TIMEOUT_S)
    return stopped, server


def assert_stopped_by_pid(airflow: LocalAirflow, stopped: subprocess.CompletedProcess) -> None:
    """``down`` stopped standalone's whole process group (api-server, scheduler, dag-processor,
    triggerer and their children) by the PID in its file, and removed the file."""
    assert stopped.returncode == 0, output(stopped)
    assert "airflow       stopped" in stopped.stdout
    assert not supervisor.pidfile(airflow.stack, SERVICE).exists()
    assert group_members(airflow.pid) == [], "standalone's process group outlived down"
    port = int(airflow.url.rsplit(":", 1)[1])
    assert not port_in_use(port), f"{airflow.url} still answers after down"
