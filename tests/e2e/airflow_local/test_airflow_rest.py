"""Trigger ``sentiment_pipeline`` through Airflow's REST API, against ``make airflow``'s Airflow.

The Airflow is this folder's one ``make airflow`` deployment (``local_airflow``: ``airflow standalone`` on the
session stack, on a free port). Auth is the simple auth manager with real users (``admin`` and ``viewer``)
and the password file it generates, exactly as a user of ``airflow standalone`` meets it
(docs/airflow-rest.md). The scheduler runs there, but the DAG is paused while these tests trigger it, so a
created run stays ``queued``; the runs they create are deleted before the module ends, so the scheduler
test's run is the only one this Airflow executes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sentiflow import names
from tests.e2e.airflow_local.deployment import DAG_ID, HTTP_TIMEOUT_S, LocalAirflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def admin(local_airflow: LocalAirflow) -> Iterator[requests.Session]:
    """The admin's session, with the DAG paused; deletes every run this module's tests created."""
    session = local_airflow.session("admin")
    # Paused as make airflow leaves it: the scheduler starts no run of a paused DAG, so a trigger is only
    # created and queued. (Unpausing is the scheduler test's.)
    response = session.patch(
        f"{local_airflow.url}/api/v2/dags/{DAG_ID}", json={"is_paused": True}, timeout=HTTP_TIMEOUT_S
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_paused"] is True
    before = {run["dag_run_id"] for run in local_airflow.runs(session)}
    yield session
    runs = local_airflow.runs(session)
    created = {run["dag_run_id"]: run["state"] for run in runs if run["dag_run_id"] not in before}
    deleted = {
        run_id: session.delete(
            f"{local_airflow.url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", timeout=HTTP_TIMEOUT_S
        ).status_code
        for run_id in created
    }
    assert set(created.values()) <= {"queued"}, created  # none started: the DAG stayed paused
    assert set(deleted.values()) <= {204}, deleted


def test_trigger_with_custom_params_creates_a_queued_run_with_that_conf(
    local_airflow: LocalAirflow, admin: requests.Session
) -> None:
    conf = {
        "selection_metric": names.VAL_AUC,
        names.NUM_TRAIN_EPOCHS: 2,
        names.LEARNING_RATE: 3e-5,
        "train_backend": "local",
        "run_baseline": False,
    }
    response = admin.post(
        f"{local_airflow.url}/api/v2/dags/{DAG_ID}/dagRuns",
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
        f"{local_airflow.url}/api/v2/dags/{DAG_ID}/dagRuns/rest-custom-params", timeout=HTTP_TIMEOUT_S
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
    local_airflow: LocalAirflow, admin: requests.Session, param: str, value: object
) -> None:
    before = {run["dag_run_id"] for run in local_airflow.runs(admin)}
    response = admin.post(
        f"{local_airflow.url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {param: value}},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 400, response.text
    assert param in response.json()["detail"]
    assert {run["dag_run_id"] for run in local_airflow.runs(admin)} == before  # no run was created


def test_trigger_needs_a_token_and_a_role_that_may_run_dags(
    local_airflow: LocalAirflow, admin: requests.Session
) -> None:
    url = f"{local_airflow.url}/api/v2/dags/{DAG_ID}/dagRuns"
    body = {"logical_date": None, "conf": {}}
    assert requests.post(url, json=body, timeout=HTTP_TIMEOUT_S).status_code == 401
    wrong = requests.post(
        f"{local_airflow.url}/auth/token",
        json={"username": "admin", "password": "not-the-password"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert wrong.status_code == 401
    viewer = local_airflow.session("viewer")
    assert viewer.post(url, json=body, timeout=HTTP_TIMEOUT_S).status_code == 403
    assert viewer.get(url, timeout=HTTP_TIMEOUT_S).status_code == 200  # but may read runs


def test_unknown_param_name_is_not_rejected_by_airflow(
    local_airflow: LocalAirflow, admin: requests.Session
) -> None:
    """Airflow validates only the declared Params: an extra (e.g. misspelt) key passes into the run's conf.

    Pinned so the docs stay true: a typo is not caught at trigger time (docs/airflow-rest.md).
    """
    response = admin.post(
        f"{local_airflow.url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": "rest-typo", "logical_date": None, "conf": {"learnin_rate": 1e-4}},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    assert response.json()["conf"] == {"learnin_rate": 1e-4}
