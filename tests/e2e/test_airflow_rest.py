"""Trigger ``sentiment_pipeline`` through Airflow's REST API, against a real Airflow api-server.

The api-server runs on 127.0.0.1 on a free port, with its own temporary ``AIRFLOW_HOME`` and SQLite DB
(not the session stack's, which ``dag.test()`` tests write to) and the session stack's
``client_env``. ``airflow dags reserialize`` puts the DAGs into the DB, which is all the api-server needs
to accept a trigger; no scheduler runs, so a created run stays ``queued`` — executing it is what the
``dag.test()`` end-to-end tests cover. Auth is the simple auth manager with real users and the password
file it generates, exactly as a user of ``airflow standalone`` meets it (docs/airflow-rest.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sentiflow import localstack, names, supervisor
from sentiflow.localstack import HOST, StackSettings
from sentiflow.supervisor import Service

pytestmark = pytest.mark.slow

DAG_ID = "sentiment_pipeline"
#: A loaded 2-core machine can take minutes to import Airflow and parse the DAGs.
START_TIMEOUT_S = 240.0
HTTP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AirflowApi:
    url: str
    home: Path

    def token(self, username: str) -> str:
        """A JWT from ``POST /auth/token`` with the password the simple auth manager generated."""
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
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


@pytest.fixture(scope="module")
def airflow_api(stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowApi]:
    """An Airflow api-server (1 worker) with our DAGs serialized; stopped by PID whatever happens."""
    # Same services as the session stack, but an Airflow home (and DB) of its own.
    settings = stack.model_copy(
        update={"home": tmp_path_factory.mktemp("airflow-rest"), "start_timeout_s": START_TIMEOUT_S}
    )
    port = localstack.free_port()
    env = {
        **localstack.client_env(settings),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{HOST}:{port}",
        "AIRFLOW__API__WORKERS": "1",
    }
    localstack.airflow_init(settings)
    subprocess.run(
        [localstack._bin("airflow"), "dags", "reserialize"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_S,
    )
    service = Service(
        name="airflow-api-server",
        argv=[localstack._bin("airflow"), "api-server", "--host", HOST, "--port", str(port), "-w", "1"],
        env=env,
        health=supervisor.http_ok(f"http://{HOST}:{port}/api/v2/monitor/health"),
        ports=(port,),
    )
    try:
        supervisor.start(settings, service)
        yield AirflowApi(url=f"http://{HOST}:{port}", home=settings.airflow_home)
    finally:
        supervisor.stop(settings, service.name)


@pytest.fixture(scope="module")
def admin(airflow_api: AirflowApi) -> requests.Session:
    session = airflow_api.session("admin")
    # Unpause as a user would; without a scheduler the run still only gets created and queued.
    response = session.patch(
        f"{airflow_api.url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=HTTP_TIMEOUT_S
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_paused"] is False
    return session


def _runs(api: AirflowApi, session: requests.Session) -> list[dict]:
    response = session.get(f"{api.url}/api/v2/dags/{DAG_ID}/dagRuns", timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return response.json()["dag_runs"]


def test_trigger_with_custom_params_creates_a_queued_run_with_that_conf(
    airflow_api: AirflowApi, admin: requests.Session
) -> None:
    conf = {
        "selection_metric": names.VAL_AUC,
        names.NUM_TRAIN_EPOCHS: 2,
        names.LEARNING_RATE: 3e-5,
        "train_backend": "local",
        "run_baseline": False,
    }
    response = admin.post(
        f"{airflow_api.url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": "rest-custom-params", "logical_date": None, "conf": conf},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["dag_run_id"] == "rest-custom-params"
    assert created["state"] == "queued"
    assert created["run_type"] == "manual"
    assert created["triggered_by"] == "rest_api"

    fetched = admin.get(
        f"{airflow_api.url}/api/v2/dags/{DAG_ID}/dagRuns/rest-custom-params", timeout=HTTP_TIMEOUT_S
    )
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["conf"] == conf
    assert fetched.json()["state"] == "queued"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        (names.NUM_TRAIN_EPOCHS, "three"),  # wrong type
        ("train_backend", "gpu"),  # not in the enum
        (names.LEARNING_RATE, 0),  # exclusiveMinimum 0
    ],
)
def test_conf_violating_the_param_schema_is_rejected_naming_the_param(
    airflow_api: AirflowApi, admin: requests.Session, param: str, value: object
) -> None:
    before = {run["dag_run_id"] for run in _runs(airflow_api, admin)}
    response = admin.post(
        f"{airflow_api.url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {param: value}},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 400, response.text
    assert param in response.json()["detail"]
    assert {run["dag_run_id"] for run in _runs(airflow_api, admin)} == before  # no run was created


def test_trigger_needs_a_token_and_a_role_that_may_run_dags(
    airflow_api: AirflowApi, admin: requests.Session
) -> None:
    url = f"{airflow_api.url}/api/v2/dags/{DAG_ID}/dagRuns"
    body = {"logical_date": None, "conf": {}}
    assert requests.post(url, json=body, timeout=HTTP_TIMEOUT_S).status_code == 401
    wrong = requests.post(
        f"{airflow_api.url}/auth/token",
        json={"username": "admin", "password": "not-the-password"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert wrong.status_code == 401
    viewer = airflow_api.session("viewer")
    assert viewer.post(url, json=body, timeout=HTTP_TIMEOUT_S).status_code == 403
    assert viewer.get(url, timeout=HTTP_TIMEOUT_S).status_code == 200  # but may read runs


def test_unknown_param_name_is_not_rejected_by_airflow(
    airflow_api: AirflowApi, admin: requests.Session
) -> None:
    """Airflow validates only the declared Params: an extra (e.g. misspelt) key passes into the run's conf.

    Pinned so the docs stay true: a typo is not caught at trigger time (docs/airflow-rest.md).
    """
    response = admin.post(
        f"{airflow_api.url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": "rest-typo", "logical_date": None, "conf": {"learnin_rate": 1e-4}},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    assert response.json()["conf"] == {"learnin_rate": 1e-4}
