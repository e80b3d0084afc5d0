"""A version tampered with after registration fails the DAG's release before its promotion: every replica
stages the candidate first, the replica's refusal fails the promote step naming the signature, ``champion``
never moves and the served version never changes.

Real services throughout: the session's S3 and MLflow (with auth), the model server under gunicorn
following ``champion`` and verifying signatures, Airflow's ``dag.test()`` in a child process. Two versions are
logged and signed by the pipeline's ``log_classifier``; the first is served; the second's pickled model is
overwritten in S3 (``tests/tamper.py``); then ``release_registered_version`` (``tests/e2e/dags/``: the real
``validate_params`` and the real release tail of both pipeline DAGs, handed that version as a training task
hands over the one it registered) selects it with ``force_promote`` and tries to release it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiflow import names, registry
from sentiflow.localstack import stack as localstack
from sentiflow.security.signing import SIGNATURE_FILE
from sentiflow.serving_client import ModelServerClient
from sentiflow.settings.components import MLflowSettings
from tests.dagrun import failure_message, run_dag, task_logs
from tests.devserver import DevServer, own_registered_model, register_tfidf_versions
from tests.tamper import tampered_version

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "release_registered_version"


@pytest.fixture(scope="module")
def served(stack):
    """A registered model of this module's own; version 1 (signed) served as champion, version 2 (signed,
    better by its logged val_f1) registered and not served."""
    with own_registered_model("tampered"):
        localstack.airflow_init(stack)
        versions = register_tfidf_versions(2, metrics=[{names.VAL_F1: 0.70}, {names.VAL_F1: 0.90}])
        server = DevServer(stack, env={}).start()
        try:
            server.serving(versions[0])
            yield {"server": server, "champion": versions[0], "tampered": versions[1]}
        finally:
            server.stop()


def test_a_tampered_version_fails_its_staging_and_the_alias_never_moves(served, tmp_path):
    settings = MLflowSettings()
    name = settings.registered_model_name
    client = registry.mlflow_client(settings)
    server = ModelServerClient(served["server"].url, served["server"].token)
    champion, bad = served["champion"], served["tampered"]
    before = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert before["champion"] == champion and str(server.model()["version"]) == champion

    with tampered_version(name, bad):
        result = run_dag(
            DAG_ID,
            {
                "registered_version": bad,
                "registered_run_id": client.get_model_version(name, bad).run_id,
                "selection_metric": names.VAL_F1,
                "force_promote": True,
                # the gate would load it for its behavioural cases and refuse it there (the gate's own
                # check: tests/integration/gate/test_scoring_signed.py); this test is about the deploy's
                "behaviour_check": False,
            },
            env={"AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)},
        )

    tasks = result["tasks"]
    assert result["state"] == "failed", tasks
    assert (tasks["select_best"], tasks["promote"]) == ("success", "failed")  # the staging refused it
    assert tasks["deploy"] == "upstream_failed" and tasks["inference_check"] == "upstream_failed"
    message = failure_message(task_logs(result, tmp_path / "logs")["promote"])
    # the failed task says why, naming the signature and the file, before anything moved
    assert message, "the promote task's log has no AirflowFailException"
    assert message.startswith(f"version {bad} was not promoted"), message
    assert f"could not stage version {bad}" in message
    assert f"signature {SIGNATURE_FILE} does not match the files: changed files: python_model.pkl" in message

    after = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert after == before  # champion never moved; the candidate alias is gone again
    assert str(server.model()["version"]) == champion  # the served version never changed
    # The replicas' refusal was reported in their rows (what GET /replicas shows): the promote step's message
    # above quotes it from there.
