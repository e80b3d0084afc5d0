"""``POST /deploy``'s Airflow client against this folder's real Airflow: a release request is a run of the
release DAG (``names.RELEASE_DAG``) with the request as its conf, read back with its state, its failed tasks
and its link.

The first test needs no DAG: the local model server's own user (``stack_auth.AIRFLOW_RELEASER``, made by
``make airflow``) logs in and may read DAG runs. The others need the release DAG in the DAGs folder
(``dags/``); they log in as the admin the simple auth manager generated (``POST /auth/token``).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import requests

from sentiflow import names
from sentiflow.security import stack_auth
from sentiflow.settings.server import ServerSettings
from serving.releases import (
    AirflowUnavailableError,
    ReleaseRunNotFoundError,
    ReleaseRuns,
    release_conf,
)
from tests.e2e.airflow_local.deployment import HTTP_TIMEOUT_S, LocalAirflow

#: No such registered version: the release's first task refuses it, so the run fails fast.
MISSING_VERSION = "987654"
RUN_TIMEOUT_S = 900.0


def _runs(airflow: LocalAirflow, password: str | None = None) -> ReleaseRuns:
    return ReleaseRuns(
        ServerSettings(
            airflow_url=airflow.url, airflow_username="admin", airflow_password=password or airflow.password
        )
    )


@pytest.fixture(scope="module")
def release_dag(local_airflow: LocalAirflow) -> str:
    """The release DAG, once the dag-processor has parsed it (it re-parses every 2 minutes)."""
    session, deadline = local_airflow.session(), time.monotonic() + 300
    url = f"{local_airflow.url}/api/v2/dags/{names.RELEASE_DAG}"
    while session.get(url, timeout=HTTP_TIMEOUT_S).status_code != 200:
        assert time.monotonic() < deadline, f"{names.RELEASE_DAG} is not in Airflow: is it in dags/?"
        time.sleep(3)
    return names.RELEASE_DAG


def test_the_local_servers_airflow_user_logs_in_and_reads_runs(local_airflow: LocalAirflow) -> None:
    stack = local_airflow.stack
    runs = ReleaseRuns(
        ServerSettings(
            airflow_url=local_airflow.url,
            airflow_username=stack_auth.AIRFLOW_RELEASER,
            airflow_password=stack_auth.airflow_releaser_password(stack.home),
        ),
        dag_id="sentiment_pipeline",
    )
    with pytest.raises(ReleaseRunNotFoundError):  # logged in and allowed to read runs; there is no such run
        runs.get("no-such-run")


def test_a_release_request_is_a_run_of_the_release_dag_with_its_conf(
    local_airflow: LocalAirflow, release_dag: str
) -> None:
    runs = _runs(local_airflow)
    conf = release_conf(MISSING_VERSION, "e2e release request", True, "checking the trigger path")
    run = runs.trigger(conf)
    assert run.state in ("queued", "running") and run.version == MISSING_VERSION
    # the run id holds ':' and '+': quoted in the link's path
    assert run.airflow_url == f"{local_airflow.url}/dags/{release_dag}/runs/{quote(run.dag_run_id, safe='')}"
    assert requests.get(run.airflow_url, timeout=HTTP_TIMEOUT_S).status_code == 200  # the UI's page
    stored = local_airflow.session().get(
        f"{local_airflow.url}/api/v2/dags/{release_dag}/dagRuns/{quote(run.dag_run_id, safe='')}",
        timeout=HTTP_TIMEOUT_S,
    )
    assert stored.status_code == 200 and stored.json()["conf"] == conf
    assert runs.get(run.dag_run_id).requested_by == "e2e release request"
    with pytest.raises(ReleaseRunNotFoundError):
        runs.get("no-such-run")


def test_a_failed_release_run_reports_its_failed_tasks(local_airflow: LocalAirflow, release_dag: str) -> None:
    session, dag_url = local_airflow.session(), f"{local_airflow.url}/api/v2/dags/{release_dag}"
    # the release DAG is unpaused from its creation (no schedule): a request runs without anyone unpausing it
    assert session.get(dag_url, timeout=HTTP_TIMEOUT_S).json()["is_paused"] is False
    runs = _runs(local_airflow)
    run = runs.trigger(release_conf(MISSING_VERSION, "e2e failed release"))
    ended = runs.wait(run.dag_run_id, timeout_s=RUN_TIMEOUT_S, poll_s=3)
    assert ended.state == "failed", ended
    assert ended.failed_tasks, ended  # the task that refused the missing version, named


def test_a_wrong_password_is_named_and_nothing_is_triggered(local_airflow: LocalAirflow) -> None:
    with pytest.raises(AirflowUnavailableError, match="SENTIFLOW_SERVER_AIRFLOW_PASSWORD"):
        _runs(local_airflow, password="not-the-password").trigger(release_conf("1", "nobody"))


def test_a_release_the_gate_refuses_fails_and_its_reason_comes_back(
    local_airflow: LocalAirflow, release_dag: str
) -> None:
    """A manual release meets the pipeline's gate: a three-class version against a two-class champion is
    refused in Airflow, and the server's reading of the run carries the gate's reason."""
    from sentiflow import registry
    from sentiflow.settings.components import MLflowSettings
    from sentiflow.storage import ObjectStore
    from tests.devserver import (
        make_champion,
        own_registered_model,
        register_tfidf_versions,
        register_three_class_version,
    )

    with own_registered_model("gate-refuses") as name:
        (champion,) = register_tfidf_versions(1, metrics=[{names.VAL_F1: 0.90}])
        make_champion(champion)
        three = register_three_class_version(ObjectStore(), name)
        runs = _runs(local_airflow)
        conf = {
            **release_conf(three, "e2e gate check"),
            "registered_model_name": name,
            "selection_metric": names.VAL_F1,
        }
        run = runs.wait(runs.trigger(conf).dag_run_id, RUN_TIMEOUT_S)
        assert run.state == "failed" and names.GATE_TASK in run.failed_tasks, run
        assert run.gate_reason and "different label sets" in run.gate_reason, run
        settings = MLflowSettings()
        client = registry.mlflow_client(settings)
        assert registry.version_for_alias(client, settings, settings.champion_alias) == champion
