"""The release (``release/flow.py``) against the real MLflow registry, S3 and model server, with faults.

Every failure after ``promote`` must leave the registry exactly as before the promotion, tag the version so
it is never selected again unless named, put the reason on the candidate's run and fail with that reason.
Faults are real: endpoints where nothing listens (S3, MLflow, the model server), a stopped server, a
registry client whose alias write fails half way through a promotion.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import mlflow
import pytest
import requests

from sentiflow import registry
from sentiflow.families.tfidf.model import TfidfClassifier
from sentiflow.modeling.pyfunc import log_classifier
from sentiflow.names import TAG_RELEASE_FAILURE, TAG_RELEASE_PRIOR_ALIASES, TAG_ROLLED_BACK
from sentiflow.release import flow as release
from sentiflow.release.checks import (
    REPORT_ARTIFACT_PATH,
    CheckReport,
    cases_from_records,
    publish_report,
    run_check,
)
from sentiflow.security.approval import check_servable
from sentiflow.security.signing import SignatureError
from sentiflow.serving_client import ModelServerClient
from sentiflow.settings.components import MLflowSettings, S3Settings
from sentiflow.settings.server import ServerSettings
from sentiflow.storage import ObjectStore
from tests.devserver import NEG_TEXTS, POS_TEXTS, DevServer, make_champion

DEAD = "http://127.0.0.1:9"  # nothing listens on port 9


def _register(settings: MLflowSettings, count: int) -> list[tuple[str, str]]:
    """``count`` small TF-IDF versions of ``settings``' model: [(version, run_id)]."""
    mlflow.set_experiment(settings.experiment_name)
    out = []
    for i in range(count):
        clf = TfidfClassifier.build(["negative", "positive"], C=1.0 + i)
        clf.fit(NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12)
        with mlflow.start_run() as run:
            info = log_classifier(clf, registered_model_name=settings.registered_model_name)
        out.append((str(info.registered_model_version), run.info.run_id))
    return out


@pytest.fixture
def model(stack) -> tuple[MLflowSettings, list[tuple[str, str]]]:
    """A fresh registered model with versions 1..3; champion 2, previous 1 (a release has happened)."""
    settings = MLflowSettings(registered_model_name=f"release-{uuid.uuid4().hex[:8]}")
    versions = _register(settings, 3)
    client = registry.mlflow_client(settings)
    client.set_registered_model_alias(settings.registered_model_name, settings.previous_alias, "1")
    client.set_registered_model_alias(settings.registered_model_name, settings.champion_alias, "2")
    return settings, versions


def aliases(settings: MLflowSettings) -> tuple[str | None, str | None]:
    client = registry.mlflow_client(settings)
    return (
        registry.version_for_alias(client, settings, settings.champion_alias),
        registry.version_for_alias(client, settings, settings.previous_alias),
    )


def report(version: str, accuracy: float) -> CheckReport:
    return CheckReport(
        version=version,
        rows=[{"text": "t", "correct": accuracy >= 1}],
        accuracy=accuracy,
        required_accuracy=0.8,
    )


def _assert_rolled_back(settings: MLflowSettings, version: str, run_id: str, reason_part: str) -> None:
    client = registry.mlflow_client(settings)
    name = settings.registered_model_name
    assert aliases(settings) == ("2", "1")  # exactly as before the promotion
    assert reason_part in client.get_model_version(name, version).tags[TAG_ROLLED_BACK]
    assert reason_part in client.get_run(run_id).data.tags[TAG_RELEASE_FAILURE]
    assert TAG_RELEASE_PRIOR_ALIASES not in client.get_registered_model(name).tags
    # never selected again on its own, still available when a user names it
    assert version not in {c.version for c in registry.all_candidates(client, name)}
    assert [c.version for c in registry.candidates_for_versions(client, name, [version])] == [version]


def test_a_passing_check_completes_the_release(model) -> None:
    settings, _versions = model
    client = registry.mlflow_client(settings)
    prior = release.promote(client, settings, "3")
    assert prior == registry.PriorAliases(candidate="3", champion="2", previous="1")
    assert aliases(settings) == ("3", "2")
    store = ObjectStore()
    store.ensure_bucket()
    prefix = store.uri("reports", uuid.uuid4().hex[:8], "inference_check")
    run_id = dict(_versions)["3"]
    summary = release.check(
        client,
        settings,
        None,
        prior,
        run_check=lambda: report("3", 1.0),
        write_report=lambda r: publish_report(
            r, store=store, prefix=prefix, client=client, run_id=run_id, extra={"dag_run_id": "manual"}
        ),
        timeout_s=5,
        run_id=run_id,
    )
    assert summary["passed"] and summary["report_uri"] == str(prefix)
    # the report is in S3 and on the checked version's MLflow run
    assert store.get_json(prefix.join("summary.json"))["dag_run_id"] == "manual"
    assert b"text,correct" in store.get_bytes(prefix.join("predictions.csv"))
    files = {f.path for f in client.list_artifacts(run_id, REPORT_ARTIFACT_PATH)}
    assert files == {f"{REPORT_ARTIFACT_PATH}/predictions.csv", f"{REPORT_ARTIFACT_PATH}/summary.json"}
    assert aliases(settings) == ("3", "2")
    assert TAG_RELEASE_PRIOR_ALIASES not in client.get_registered_model(settings.registered_model_name).tags


@pytest.mark.parametrize(
    "fault", ["accuracy", "wrong_version", "s3_down", "mlflow_upload_down", "server_down"]
)
def test_any_failure_after_promote_restores_the_prior_aliases(model, fault, monkeypatch) -> None:
    # MLflow's own retries back off for minutes; the dead endpoint should fail at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings, versions = model
    version, run_id = versions[2]
    client = registry.mlflow_client(settings)
    prior = release.promote(client, settings, version)
    dead_store = ObjectStore(S3Settings(endpoint_url=DEAD, max_attempts=1, connect_timeout_s=1))
    dead_mlflow = registry.mlflow_client(MLflowSettings(tracking_uri=DEAD))
    dead_server = ModelServerClient(DEAD, "t", timeout_s=2)
    cases = cases_from_records([{"text": "great fun", "label": "positive"}])

    live_store = ObjectStore()
    live_store.ensure_bucket()

    def write_report(r: CheckReport) -> dict:
        # the pipeline's own publisher, with S3 or MLflow dead where the fault says so
        return publish_report(
            r,
            store=dead_store if fault == "s3_down" else live_store,
            prefix=live_store.uri("reports", uuid.uuid4().hex[:8], "inference_check"),
            client=dead_mlflow if fault == "mlflow_upload_down" else client,
            run_id=run_id,
            extra={},
        )

    def check_report() -> CheckReport:
        if fault == "server_down":
            return run_check(dead_server.predict, cases, 0.8)
        return report("1" if fault == "wrong_version" else version, 0.0 if fault == "accuracy" else 1.0)

    with pytest.raises(release.ReleaseError) as info:
        release.check(
            client,
            settings,
            dead_server if fault == "server_down" else None,
            prior,
            run_check=check_report,
            write_report=write_report,
            timeout_s=3,
            run_id=run_id,
        )
    message = str(info.value)
    assert "inference check of version 3 failed" in message and "aliases restored" in message
    expected = {
        "accuracy": "accuracy 0.000 < required 0.800",
        "wrong_version": "answered with version 1",
        "s3_down": "127.0.0.1:9",
        "mlflow_upload_down": "127.0.0.1:9",
        "server_down": "127.0.0.1:9",
    }[fault]
    assert expected in message
    if fault == "server_down":
        assert "redeploying version 2 failed" in message
    _assert_rolled_back(settings, version, run_id, expected)


class _FailsOnceOnChampion:
    """The real registry client, except that the first move of ``champion`` fails (MLflow fell over)."""

    def __init__(self, client, settings: MLflowSettings) -> None:
        self._client, self._settings, self.failed = client, settings, False

    def __getattr__(self, name):
        return getattr(self._client, name)

    def set_registered_model_alias(self, model, alias, version):
        if alias == self._settings.champion_alias and not self.failed:
            self.failed = True
            raise ConnectionError("registry unavailable")
        return self._client.set_registered_model_alias(model, alias, version)


def test_a_promotion_that_fails_half_way_and_is_retried_restores_exactly(model) -> None:
    settings, _versions = model
    client = registry.mlflow_client(settings)
    flaky = _FailsOnceOnChampion(client, settings)
    with pytest.raises(ConnectionError):
        release.promote(flaky, settings, "3")
    assert aliases(settings) == ("2", "1")  # previous had moved; put back
    # Airflow retries the task: same starting point, then a failed check restores exactly it
    prior = release.promote(client, settings, "3")
    assert prior == registry.PriorAliases(candidate="3", champion="2", previous="1")
    assert aliases(settings) == ("3", "2")
    # a retry after a *complete* promotion must not take ("3", "2") for the starting point
    assert release.promote(client, settings, "3") == prior
    with pytest.raises(release.ReleaseError):
        release.check(
            client,
            settings,
            None,
            prior,
            run_check=lambda: report("3", 0.0),
            write_report=lambda r: r.summary(),
            timeout_s=3,
        )
    assert aliases(settings) == ("2", "1")


def test_a_rollback_leaves_a_champion_someone_else_moved_meanwhile(model) -> None:
    settings, versions = model
    client = registry.mlflow_client(settings)
    prior = release.promote(client, settings, "3")
    registry.set_alias(client, settings, settings.champion_alias, "1")  # an operator's own move
    message = release.roll_back(client, settings, prior, "check failed", run_id=versions[2][1])
    assert "champion was moved to 1 meanwhile by someone else; left alone" in message
    assert aliases(settings) == ("1", "2")
    assert (
        "check failed" in client.get_model_version(settings.registered_model_name, "3").tags[TAG_ROLLED_BACK]
    )


def test_the_first_champion_failing_leaves_no_champion(stack) -> None:
    settings = MLflowSettings(registered_model_name=f"release-{uuid.uuid4().hex[:8]}")
    ((version, _),) = _register(settings, 1)
    client = registry.mlflow_client(settings)
    prior = release.promote(client, settings, version)
    with pytest.raises(release.ReleaseError, match="first champion"):
        release.deploy(client, settings, ModelServerClient(DEAD, "t", timeout_s=2), prior, timeout_s=3)
    assert aliases(settings) == (None, None)


@pytest.fixture
def served_model(stack, tmp_path) -> Iterator[tuple[MLflowSettings, DevServer]]:
    settings = MLflowSettings(registered_model_name=f"release-srv-{uuid.uuid4().hex[:8]}")
    _register(settings, 2)
    make_champion("1", name=settings.registered_model_name)  # approved, as the pipeline's release does
    env = {
        "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME": settings.registered_model_name,
        "SENTIFLOW_SERVER_WORKERS": "1",
    }
    server = DevServer(stack, env, state_root=tmp_path / "state").start()
    try:
        yield settings, server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_failed_check_against_the_live_server_serves_the_old_champion_again(served_model) -> None:
    settings, server = served_model
    client = registry.mlflow_client(settings)
    http = ModelServerClient(server.url, server.token, timeout_s=60)
    assert http.wait_for_version("1", timeout_s=120)["version"] == "1"
    prior = release.promote(client, settings, "2")
    assert release.deploy(client, settings, http, prior, timeout_s=120)["version"] == "2"
    wrong = cases_from_records([{"text": POS_TEXTS[0], "label": "negative"}])  # the model will disagree
    with pytest.raises(release.ReleaseError, match="model server back on version 1"):
        release.check(
            client,
            settings,
            http,
            prior,
            run_check=lambda: run_check(http.predict, wrong, 1.0),
            write_report=lambda r: r.summary(),
            timeout_s=120,
        )
    assert aliases(settings) == ("1", None)
    assert requests.get(f"{server.url}/model", timeout=10).json()["version"] == "1"
    # the pipeline's signed statements say the same: version 2 revoked, version 1 approved after it
    name, keys = settings.registered_model_name, ServerSettings().signing_public_keys
    versions = client.search_model_versions(f"name='{name}'")
    by_number = {str(v.version): v for v in versions}
    assert check_servable(by_number["1"], versions, keys).reason.startswith("served again")
    with pytest.raises(SignatureError, match="revoked by the pipeline: inference check of version 2"):
        check_servable(by_number["2"], versions, keys)


@pytest.mark.slow
def test_every_replica_stages_the_candidate_before_the_champion_moves(served_model) -> None:
    settings, server = served_model
    client = registry.mlflow_client(settings)
    http = ModelServerClient(server.url, server.token, timeout_s=60)
    assert http.wait_for_version("1", timeout_s=120)["version"] == "1"
    assert release.stage(client, settings, http, "2", timeout_s=120) is True
    (replica,) = http.replicas()["replicas"]
    assert (replica["staged_version"], replica["version"], replica["candidate_version"]) == ("2", "1", "2")
    assert aliases(settings) == ("1", None)  # staged, nothing promoted yet
    assert requests.get(f"{server.url}/model", timeout=10).json()["version"] == "1"
    prior = release.promote(client, settings, "2")
    assert release.deploy(client, settings, http, prior, timeout_s=120)["version"] == "2"
    release.finish(client, settings)  # the release is over: no replica keeps staging for it
    assert registry.version_for_alias(client, settings, settings.candidate_alias) is None


@pytest.mark.slow
def test_a_replica_that_cannot_stage_the_candidate_fails_the_release_before_promotion(served_model) -> None:
    from tests.tamper import tampered_version

    settings, server = served_model
    client = registry.mlflow_client(settings)
    http = ModelServerClient(server.url, server.token, timeout_s=60)
    assert http.wait_for_version("1", timeout_s=120)["version"] == "1"
    with (
        tampered_version(settings.registered_model_name, "2"),
        pytest.raises(release.StagingError, match="could not stage version 2: SignatureError"),
    ):
        release.stage(client, settings, http, "2", timeout_s=120)
    assert aliases(settings) == ("1", None)  # champion never moved
    assert registry.version_for_alias(client, settings, settings.candidate_alias) is None
    assert requests.get(f"{server.url}/model", timeout=10).json()["version"] == "1"


def test_an_older_deployments_champion_is_approved_once_by_the_command(model, capsys) -> None:
    """A champion from before approvals has none (a restarting replica would refuse it): the command signs
    one for the version champion names, and only that one."""
    from sentiflow.security.approval import main

    settings, _ = model  # champion 2, set without a release
    client = registry.mlflow_client(settings)
    name, keys = settings.registered_model_name, ServerSettings().signing_public_keys
    versions = client.search_model_versions(f"name='{name}'")
    with pytest.raises(SignatureError, match="no signed approval"):
        check_servable(next(v for v in versions if v.version == "2"), versions, keys)
    assert main(["--model", name, "--reason", "upgrade to signed approvals"]) == 0
    assert "version 2 of" in capsys.readouterr().out
    versions = client.search_model_versions(f"name='{name}'")
    approved = check_servable(next(v for v in versions if v.version == "2"), versions, keys)
    assert approved.reason == "approved as the serving champion: upgrade to signed approvals"
