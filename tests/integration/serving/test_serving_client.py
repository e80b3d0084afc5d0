"""``ModelServerClient`` (what the DAG uses) against a real gunicorn server and the real registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sentiflow.serving_client import ModelServerClient, ModelServerError
from tests.devserver import DevServer, make_champion, register_tfidf_versions
from tests.devserver import own_registered_model as own_model


@pytest.fixture(scope="module", autouse=True)
def own_registered_model(stack) -> Iterator[str]:
    """A release moves the champion alias: this module's own model, so other modules' aliases stay theirs."""
    with own_model("client-test") as name:
        yield name


@pytest.fixture(scope="module")
def versions(stack) -> list[str]:
    return register_tfidf_versions(2)


@pytest.fixture(scope="module")
def server(stack, versions, tmp_path_factory) -> Iterator[DevServer]:
    env = {
        "SENTIFLOW_SERVER_WORKERS": "1",
        "SENTIFLOW_SERVER_RELOAD_POLL_S": "0.2",
        "SENTIFLOW_SERVER_STATE_DIR": str(tmp_path_factory.mktemp("client-server-state")),
    }
    srv = DevServer(stack, env).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server) -> ModelServerClient:
    return ModelServerClient(server.url, server.token)


def test_release_predict_model_and_feedback(client, server, versions):
    assert server.release(versions[0])["alias_version"] == versions[0]
    assert client.wait_for_version(versions[0], timeout_s=30)["version"] == versions[0]
    result = client.predict(["a wonderful film", "boring and dull"])
    assert result.model_version == versions[0]
    assert result.labels == ["positive", "negative"]
    assert client.model()["version"] == versions[0]

    signed = client.predict("boring")
    row = client.feedback(signed.prediction_ids[0], "boring", correct=False, true_label="positive")
    assert row["verified"] and row["model_version"] == versions[0]
    with pytest.raises(ModelServerError, match="422"):
        client.feedback(signed.prediction_ids[0], "another text", correct=True)
    reviewer = ModelServerClient(server.url, server.reviewer_token)
    frame = reviewer.feedback_frame()
    assert frame["text"].tolist()[-1] == "boring" and not frame["correct"].tolist()[-1]
    assert frame["verified"].tolist()[-1] and frame["status"].tolist()[-1] == "pending"
    assert reviewer.feedback_export("csv").startswith(b"id,created_at,text")
    with pytest.raises(ModelServerError, match="401"):
        client.feedback_export()  # the admin token reads no feedback


def test_an_alias_move_then_wait_for_replicas_and_for_version(client, versions):
    """What the release's deploy step does after the promote: wait until the replicas serve the version."""
    make_champion(versions[1])
    assert client.wait_for_replicas(versions[1], timeout_s=60, poll_s=0.2)["alias_version"] == versions[1]
    assert client.wait_for_version(versions[1], timeout_s=60)["version"] == versions[1]


def test_errors_name_the_url_and_the_problem(client, server, versions):
    with pytest.raises(ModelServerError, match="401") as info:
        ModelServerClient(server.url, "wrong").feedback_export()
    assert server.url in str(info.value) and info.value.status == 401
    with pytest.raises(ModelServerError, match="needs an admin token"):
        ModelServerClient(server.url).feedback_export()
    with pytest.raises(
        ModelServerError, match=r"Airflow at http://127\.0\.0\.1:[0-9]+ is unreachable"
    ) as info:
        client.deploy(versions[0], "client test")  # the stack's Airflow is not started: nothing to ask
    assert info.value.status == 503 and info.value.body["error"] == "airflow_unavailable"
    with pytest.raises(ModelServerError, match="503"):
        client.release_run("manual__1")
    with pytest.raises(ModelServerError, match="422"):
        client.predict([""])
    with pytest.raises(ModelServerError, match="unreachable") as info:
        ModelServerClient("http://127.0.0.1:9", timeout_s=2).model()
    assert "127.0.0.1:9" in str(info.value)
    with pytest.raises(ModelServerError, match="did not serve version 424242"):
        client.wait_for_version(424242, timeout_s=1, poll_s=0.2)
    with pytest.raises(ModelServerError, match=r"not every replica .* served version 424242"):
        client.wait_for_replicas(424242, timeout_s=1, poll_s=0.2)
