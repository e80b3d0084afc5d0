"""``POST /deploy`` asks Airflow for a release run; without Airflow it says which setting is missing.

In process, without Airflow (the run itself against a real Airflow: ``tests/e2e/airflow_local``): the
body is the release DAG's conf (keys from ``sentiflow.names``), validated before anything is asked; a
server without Airflow's settings answers 503 naming each missing one; an Airflow that does not answer is a
503 naming its address; both endpoints need the admin token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from sentiflow import names
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.extension import server
from serving.http.schemas import DeployRequest
from serving.releases import release_conf
from tests.conftest import migrated_state

ADMIN = {"Authorization": "Bearer t0ken"}
GOOD = {"version": "7", "requested_by": "ann"}


def _client(tmp_path, **settings: object) -> Iterator[FlaskClient]:
    app = create_app(
        ServerSettings(state_dir=migrated_state(tmp_path), admin_token="t0ken", **settings), start=False
    )
    try:
        yield app.test_client()
    finally:
        server(app).close()


@pytest.fixture
def client(tmp_path) -> Iterator[FlaskClient]:
    yield from _client(tmp_path)


def test_the_body_is_the_release_dags_conf() -> None:
    assert set(DeployRequest.model_fields) == {
        names.RELEASE_VERSION,
        names.RELEASE_REQUESTED_BY,
        names.FORCE_PROMOTE,
        names.FORCE_REASON,
    }
    body = DeployRequest.model_validate(
        {
            "version": 7,
            "requested_by": "ann",
            "force_promote": True,
            "force_reason": "the gate compares other labels",
        }
    )
    conf = release_conf(str(body.version), body.requested_by, body.force_promote, body.force_reason)
    assert conf == {
        names.RELEASE_VERSION: "7",
        names.RELEASE_REQUESTED_BY: "ann",
        names.FORCE_PROMOTE: True,
        names.FORCE_REASON: "the gate compares other labels",
    }
    assert release_conf("7", "ann") == {"version": "7", "requested_by": "ann", "force_promote": False}


BAD_BODIES = [
    ("no version", {"requested_by": "ann"}, "version"),
    ("no requester", {"version": "7"}, "requested_by"),
    ("blank requester", {"version": "7", "requested_by": "   "}, "requested_by"),
    ("version not digits", {"version": "7a", "requested_by": "ann"}, "version"),
    ("negative version", {"version": -1, "requested_by": "ann"}, "version"),
    ("an alias is not a version", {"alias": "candidate", "requested_by": "ann"}, "alias"),
    ("force without a reason", {**GOOD, "force_promote": True}, "force_reason"),
    ("force with a blank reason", {**GOOD, "force_promote": True, "force_reason": " "}, "force_reason"),
    ("force not a boolean", {**GOOD, "force_promote": "yes"}, "force_promote"),
    ("null reason", {**GOOD, "force_reason": None}, "force_reason"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_a_bad_body_is_a_422_naming_the_field_before_airflow_is_asked(client, case, body, field):
    r = client.post("/deploy", json=body, headers=ADMIN)  # no Airflow configured: a valid body is a 503
    assert r.status_code == 422, (case, r.get_json())
    assert field in r.get_json()["message"], r.get_json()


def test_without_airflow_settings_deploy_is_a_503_naming_each_missing_one(client):
    r = client.post("/deploy", json=GOOD, headers=ADMIN)
    assert r.status_code == 503 and r.get_json()["error"] == "airflow_not_configured"
    message = r.get_json()["message"]
    for env in (
        "SENTIFLOW_SERVER_AIRFLOW_URL",
        "SENTIFLOW_SERVER_AIRFLOW_USERNAME",
        "SENTIFLOW_SERVER_AIRFLOW_PASSWORD",
    ):
        assert env in message, message
    assert names.RELEASE_DAG in message
    r = client.get("/deploy/status?id=manual__1", headers=ADMIN)
    assert r.status_code == 503 and "SENTIFLOW_SERVER_AIRFLOW_URL" in r.get_json()["message"]


def test_a_missing_password_alone_is_named(tmp_path):
    for client in _client(tmp_path, airflow_url="http://127.0.0.1:9", airflow_username="releaser"):
        message = client.post("/deploy", json=GOOD, headers=ADMIN).get_json()["message"]
        assert "SENTIFLOW_SERVER_AIRFLOW_PASSWORD" in message
        assert "AIRFLOW_URL" not in message and "AIRFLOW_USERNAME" not in message


def test_an_unreachable_airflow_is_a_503_naming_its_address(tmp_path):
    settings = {"airflow_url": "http://127.0.0.1:9", "airflow_username": "releaser", "airflow_password": "pw"}
    for client in _client(tmp_path, airflow_timeout_s=3, **settings):
        for r in (
            client.post("/deploy", json=GOOD, headers=ADMIN),
            client.post("/deploy?wait=true", json=GOOD, headers=ADMIN),
            client.get("/deploy/status?id=manual__1", headers=ADMIN),
        ):
            assert r.status_code == 503 and r.get_json()["error"] == "airflow_unavailable", r.get_json()
            assert (
                "http://127.0.0.1:9" in r.get_json()["message"] and "unreachable" in r.get_json()["message"]
            )


@pytest.mark.parametrize(("method", "path"), [("post", "/deploy"), ("get", "/deploy/status?id=manual__1")])
def test_both_endpoints_need_the_admin_token(client, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = client.open(path, method=method.upper(), json=GOOD, headers=headers)
        assert r.status_code == 401 and r.get_json()["error"] == "unauthorized"


def test_query_strings_are_checked_before_airflow_is_asked(client):
    for query, name in (("wait=1", "wait"), ("wait=", "wait"), ("timeout=2147483648", "timeout")):
        bad = client.post(f"/deploy?{query}", json=GOOD, headers=ADMIN)
        assert bad.status_code == 400 and f"query parameter '{name}'" in bad.get_json()["message"], query
    assert client.get("/deploy/status", headers=ADMIN).status_code == 400  # the run's id is required
    assert client.get("/deploy/status?id=", headers=ADMIN).status_code == 400
