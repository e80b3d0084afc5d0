"""``make airflow`` (``python -m sentiflow.airflow_local up``) as a new user runs it, on free ports.

The command runs in a child process whose ``PATH`` does not contain the venv (the documented failure of a
bare ``airflow standalone`` was ``FileNotFoundError: 'airflow'``), with the Hub unreachable
(``HF_HUB_OFFLINE=1``). It must start the stack and ``airflow standalone``, print the URL and the admin
password, and that password must log in; the DAG must be there, paused, with the offline copies as its
defaults and ``train_backend`` local. ``down`` (what ``make down`` runs) stops everything by PID.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sentiflow.localstack import free_port
from sentiflow.offline import OFFLINE_IMDB, OFFLINE_MODEL

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
HTTP_TIMEOUT_S = 60.0
PARSE_TIMEOUT_S = 600.0
PORTS = ("S3", "S3_MASTER", "S3_VOLUME", "S3_FILER", "S3_ADMIN", "MLFLOW", "SERVER", "AIRFLOW")


def _env(home: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SENTIFLOW_", "MLFLOW_"))
    }
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return {
        **inherited,
        "PATH": path or "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "SENTIFLOW_STACK_HOME": str(home),
        "SENTIFLOW_STACK_START_TIMEOUT_S": "600",
        **{f"SENTIFLOW_STACK_{name}_PORT": str(free_port()) for name in PORTS},
        # standalone's log servers have fixed ports; a parallel run on this machine must not collide
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


def _module(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_make_airflow_starts_the_ui_prints_url_and_password_and_the_dag_waits_paused(tmp_path: Path) -> None:
    env = _env(tmp_path / "stack")
    try:
        started = _module(["sentiflow.airflow_local", "up"], env, timeout=1200)
        assert started.returncode == 0, f"{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
        found = re.search(r"Airflow UI: (http://\S+)\s+user: admin\s+password: (\S+)", started.stdout)
        assert found, started.stdout
        url, password = found.groups()
        assert url == f"http://127.0.0.1:{env['SENTIFLOW_STACK_AIRFLOW_PORT']}"
        assert "offline copies" in started.stdout

        login = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=HTTP_TIMEOUT_S
        )
        assert login.status_code == 201, login.text
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        deadline = time.monotonic() + PARSE_TIMEOUT_S
        dag_url = f"{url}/api/v2/dags/sentiment_pipeline"
        while (dag := session.get(dag_url, timeout=HTTP_TIMEOUT_S)).status_code != 200:
            assert time.monotonic() < deadline, f"DAG not parsed: {dag.status_code} {dag.text[:300]}"
            time.sleep(5)
        assert dag.json()["is_paused"] is True
        details = session.get(f"{url}/api/v2/dags/sentiment_pipeline/details", timeout=HTTP_TIMEOUT_S).json()
        params = {name: p.get("value") for name, p in details["params"].items()}
        assert params["dataset"] == str(OFFLINE_IMDB)
        assert params["model_name"] == str(OFFLINE_MODEL)
        assert params["train_backend"] == "local"
        health = session.get(f"{url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT_S).json()
        assert health["scheduler"]["status"] == "healthy"
        assert (tmp_path / "stack" / "run" / "airflow.pid").exists()
    finally:
        stopped = _module(["sentiflow.airflow_local", "down"], env, timeout=300)
        _module(["sentiflow.localstack", "down"], env, timeout=300)
    assert "airflow       stopped" in stopped.stdout
    assert not (tmp_path / "stack" / "run" / "airflow.pid").exists()
