"""``sentiment_release``: a manual release of a named version meets the pipeline's gate, and a forced one is
released, served and recorded.

Real services throughout: the session's S3 and MLflow (with auth), the model server under gunicorn following
``champion``, Airflow's ``dag.test()`` in a child process (``tests/dagrun.py``). A registered model of this
module's own holds a two-class champion (served) and a three-class version trained on a snapshot written to
S3 (its run names it, as a pipeline run does), so the gate scores both on that snapshot's validation rows and
finds different label sets. The tests run in file order and share the registry:

1. a release of the three-class version without force fails in select_best with the gate's reason; nothing
   moved, and the server still serves the champion;
2. the same with ``force_promote`` and a ``force_reason``: promoted, served by every replica, checked on
   cases drawn from its test snapshot; the version carries the requester, the reason and the run.
"""

from __future__ import annotations

import time

import pytest

from sentiflow import localstack, names, registry
from sentiflow.approval import Statement
from sentiflow.config import MLflowSettings
from sentiflow.serving_client import ModelServerClient
from sentiflow.storage import ObjectStore
from tests.dagrun import failure_message, run_dag, task_logs
from tests.devserver import (
    THREE,
    DevServer,
    make_champion,
    own_registered_model,
    register_tfidf_versions,
    register_three_class_version,
)

pytestmark = pytest.mark.slow


def wait_served(server: ModelServerClient, version: str, timeout_s: float = 120) -> dict:
    """``/model`` once it reports ``version`` (the server follows ``champion``); fails after ``timeout_s``."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            info = server.model()
            if str(info.get("version")) == version:
                return info
            last = f"serves version {info.get('version')}"
        except Exception as exc:  # no model loaded yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    raise AssertionError(f"the server does not serve version {version} after {timeout_s} s: {last}")


@pytest.fixture(scope="module")
def release(stack):
    """This module's registered model: a two-class champion (served) and a three-class version."""
    with own_registered_model("release-dag") as name:
        localstack.airflow_init(stack)
        (champion,) = register_tfidf_versions(1, metrics=[{names.VAL_F1: 0.90}])
        three = register_three_class_version(ObjectStore(), name)
        client = registry.mlflow_client(MLflowSettings())
        make_champion(champion)
        server = DevServer(stack, env={}).start()
        try:
            served = ModelServerClient(server.url, server.token)
            wait_served(served, champion)
            yield {"name": name, "client": client, "server": served, "champion": champion, "three": three}
        finally:
            server.stop()


def conf(version: str, **overrides) -> dict:
    return {
        names.RELEASE_VERSION: version,
        names.RELEASE_REQUESTED_BY: "alice",
        "selection_metric": names.VAL_F1,
        "check_cases_per_class": 2,
        **overrides,
    }


def aliases(client, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_a_version_the_gate_refuses_fails_the_release_and_nothing_moves(release, tmp_path) -> None:
    client, name, three = release["client"], release["name"], release["three"]
    before = aliases(client, name)

    result = run_dag(names.RELEASE_DAG, conf(three))

    tasks = result["tasks"]
    assert result["state"] == "failed", tasks
    assert (tasks["validate_params"], tasks["registered_version"]) == ("success", "success")
    assert tasks["select_best"] == "failed" and tasks["promote"] in ("upstream_failed", "skipped"), tasks
    message = failure_message(task_logs(result, tmp_path / "logs")["select_best"])
    assert message, "select_best's log has no AirflowFailException"
    assert message.startswith(f"release of version {three} (requested by alice) refused by the gate"), message
    assert "different label sets, the two models are not comparable" in message
    assert f"champion version {release['champion']} predicts ['negative', 'positive']" in message
    # the gate scored both on the three-class version's own validation rows
    tags = client.get_run(client.get_model_version(name, three).run_id).data.tags
    assert tags["gate.promote"] == "False" and tags["gate.comparable"] == "False"
    decision = result["xcom"]["select_best.decision"]  # the refusal is in the run, with who asked
    assert decision["promote"] is False and decision["requested_by"] == "alice"
    assert decision["force_reason"] is None and decision["reason"] in message
    assert aliases(client, name) == before  # nothing moved
    assert str(release["server"].model()["version"]) == release["champion"]
    assert names.TAG_RELEASE_REQUESTED_BY not in client.get_model_version(name, three).tags


def test_a_forced_release_is_promoted_served_checked_and_recorded(release) -> None:
    client, name, three, server = release["client"], release["name"], release["three"], release["server"]
    reason = "the three-class model replaces the binary one; clients were told"

    result = run_dag(names.RELEASE_DAG, conf(three, force_promote=True, force_reason=reason))

    tasks = result["tasks"]
    assert result["state"] == "success", (tasks, result["output"][-6000:])
    assert [tasks[t] for t in ("select_best", "promote", "deploy", "inference_check")] == ["success"] * 4
    assert tasks["keep_champion"] == "skipped"
    decision = result["xcom"]["select_best.decision"]
    assert decision["promote"] is True and decision["comparable"] is False
    assert "promotion forced" in decision["reason"]
    assert (decision["requested_by"], decision["force_reason"]) == ("alice", reason)
    assert f"released at the request of alice; forced: {reason}" in result["output"]  # promote's log
    assert aliases(client, name) == {"champion": three, "previous": release["champion"]}
    info = server.model()
    assert str(info["version"]) == three and info["label_names"] == THREE
    check = result["xcom"]["inference_check"]
    assert check["passed"] and check["cases"] == 6 and check["model_version"] == three
    tags = client.get_model_version(name, three).tags
    assert tags[names.TAG_RELEASE_REQUESTED_BY] == "alice"
    assert tags[names.TAG_RELEASE_FORCE_REASON] == reason
    assert tags[names.TAG_RELEASE_DAG_RUN] == result["run_id"]
    # the signed approval the replicas check says the same
    approved = Statement.model_validate_json(tags[names.TAG_APPROVAL])
    assert approved.approved and approved.version == three and approved.dag_run_id == result["run_id"]
    assert "at the request of alice" in approved.reason and f"forced: {reason}" in approved.reason


def test_a_version_that_does_not_exist_is_named_in_the_failure(release) -> None:
    """``registered_version``'s body on its own (no DAG run): the registry's answer, not a retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from sentiflow.orchestration.params import ReleaseRequest
    from sentiflow.orchestration.release_request import registered_version

    request = ReleaseRequest(version="999", requested_by="alice").model_dump_json()
    with pytest.raises(
        AirflowFailException, match=f"version 999 of registered model '{release['name']}' does not"
    ):
        registered_version.function(request)
    found = registered_version.function(
        ReleaseRequest(version=release["three"], requested_by="a").model_dump_json()
    )
    assert found["model_version"] == release["three"] and found["run_id"]
