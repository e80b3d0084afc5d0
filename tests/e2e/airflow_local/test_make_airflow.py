"""``make airflow`` (``python -m sentiflow.localstack.airflow_standalone up``) as a new user runs it, on
the session stack.

The command ran in a child process whose ``PATH`` does not contain the venv (the documented failure of a
bare ``airflow standalone`` was ``FileNotFoundError: 'airflow'``), with the Hub unreachable
(``HF_HUB_OFFLINE=1``); see ``deployment.py``. It must start the model server and ``airflow standalone``,
print the URL and the admin password, and that password must log in; the DAG must be there, paused, with the
offline copies as its defaults and ``train_backend`` local. ``down`` (what ``make down`` runs) stops
everything by PID: the ``local_airflow`` fixture asserts that at its teardown, after this folder's last test.
"""

from __future__ import annotations

import pytest
import requests

from sentiflow.localstack.offline import OFFLINE_IMDB, OFFLINE_MODEL
from tests.e2e.airflow_local.deployment import HTTP_TIMEOUT_S, LocalAirflow

pytestmark = pytest.mark.slow


def test_make_airflow_prints_url_and_password_and_starts_what_airflow_needs(
    local_airflow: LocalAirflow,
) -> None:
    stdout = local_airflow.up.stdout
    assert local_airflow.url == f"http://127.0.0.1:{local_airflow.env['SENTIFLOW_STACK_AIRFLOW_PORT']}"
    assert "offline copies" in stdout
    assert "model-server  up (pid " in stdout
    assert "airflow       up (pid " in stdout
    assert (local_airflow.stack.home / "run" / "airflow.pid").exists()


def test_the_printed_password_logs_in(local_airflow: LocalAirflow) -> None:
    login = requests.post(
        f"{local_airflow.url}/auth/token",
        json={"username": "admin", "password": local_airflow.password},
        timeout=HTTP_TIMEOUT_S,
    )
    assert login.status_code == 201, login.text
    assert login.json()["access_token"]


def test_the_dag_waits_paused_with_offline_defaults_and_the_scheduler_is_healthy(
    local_airflow: LocalAirflow,
) -> None:
    """As it was when the DAG first appeared (the scheduler test unpauses it later)."""
    assert local_airflow.dag_at_start["is_paused"] is True
    params = {name: p.get("value") for name, p in local_airflow.details_at_start["params"].items()}
    assert params["dataset"] == str(OFFLINE_IMDB)
    assert params["model_name"] == str(OFFLINE_MODEL)
    assert params["train_backend"] == "local"
    assert local_airflow.health_at_start["scheduler"]["status"] == "healthy"
