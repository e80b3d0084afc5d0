"""The golden pipeline run: one ``sentiment_pipeline`` run per test session, read by every happy-path test.

It runs through ``sentiflow.localstack.demo.run_pipeline``, the code ``make demo`` runs: the transformer
(one MiniLM
layer, 128 rows, 64 tokens) beside the TF-IDF baseline, on a small IMDb sample enriched with user feedback
stored in the model server beforehand, against the session stack and a gunicorn model server of its own.
Its outputs — MLflow runs and versions, snapshots, gate tags, the inference check's report, the drift report,
what the server serves, the terminal's progress lines and each task's log file — are what the happy-path
tests assert on. Failure paths run the smallest thing that shows them instead (the release tasks alone on an
already registered version, one task, or a unit of the library).

The run has a registered model and a server of its own, so nothing another test moves (``champion`` of the
session's default model, the default server port) changes what it left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sentiflow.localstack import stack as localstack
from sentiflow.localstack.stack import StackSettings
from tests.dagrun import small_run_conf
from tests.devserver import DevServer

REGISTERED_MODEL_KEY = "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"

#: text, predicted, correct, true label: stored as verified feedback before the run. The retrain trains on a
#: row with a true label, or on the predicted label when the prediction was right; the others are counted.
FEEDBACK = [
    ("Sentiflow probe: the zebra musical was a triumph, I adored it.", "negative", False, "positive"),
    ("Sentiflow probe: a dreary, lifeless heist film with wooden actors.", "positive", False, "negative"),
    ("Sentiflow probe: charming lighthouse drama, lovely score.", "positive", True, None),
    ("Sentiflow probe: the submarine comedy left me unsure.", "positive", False, None),
]
#: Stored unverified (cites no prediction the server signed): the retrain must leave it out.
UNVERIFIED_TEXT = "Sentiflow probe: an unsigned banana."  # cleaned: "unsigned banana" stays in the text


def transformer_conf(imdb_dir: Path, offline_model: Path, **overrides: Any) -> dict[str, Any]:
    """``small_run_conf`` with the transformer (one MiniLM layer, 128 rows, 64 tokens) beside the baseline."""
    transformer = {
        "train_transformer": True,
        "num_train_epochs": 1,
        "max_length": 64,
        "per_device_train_batch_size": 16,
        "train_subset_size": 128,
        "early_stopping_patience": None,
        "train_extra": {"num_hidden_layers": 1},
    }
    return small_run_conf(imdb_dir, offline_model, **{**transformer, **overrides})


@dataclass(frozen=True)
class GoldenRun:
    """What the golden run left behind."""

    #: ``demo.run_pipeline``'s result: state, each task's state, mapped states, XCom values, logs.
    result: dict[str, Any]
    #: What ``make demo`` printed on the terminal while it ran.
    terminal: str
    #: The folder of its per-task log files.
    log_dir: Path
    conf: dict[str, Any]
    registered_model_name: str
    server: DevServer
    stack: StackSettings


def _store_feedback(server: DevServer) -> None:
    from sentiflow.settings.server import ServerSettings
    from serving.store.db import Database
    from serving.store.feedback import PENDING, FeedbackStore, ReviewFilter

    url = ServerSettings(state_dir=server.state_dir).resolved_feedback_db_url
    feedback = FeedbackStore(Database(url))  # the server's start migrated it
    try:
        for text, predicted, correct, true_label in FEEDBACK:
            feedback.add(
                text=text, predicted_label=predicted, correct=correct, true_label=true_label, verified=True
            )
        feedback.add(text=UNVERIFIED_TEXT, predicted_label="banana", correct=False, true_label="negative")
        # a reviewer accepts every row: what trains is then decided by the pipeline's own rules
        feedback.decide(ReviewFilter(status=PENDING), "accept", reviewer="e2e reviewer")
    finally:
        feedback.db.dispose()


@pytest.fixture(scope="session")
def golden(
    stack: StackSettings, imdb_dir: Path, offline_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GoldenRun]:
    from sentiflow.localstack import demo

    name = f"sentiflow-golden-{os.getpid()}"
    localstack.airflow_init(stack)
    server = DevServer(
        stack,
        env={REGISTERED_MODEL_KEY: name},
        name="golden-model-server",
        port=localstack.free_port(),
        state_root=tmp_path_factory.mktemp("golden-model-server"),
    ).start()
    try:
        # Before the first release no model serves predictions, so no prediction can be cited: the rows go
        # straight into the server's feedback store (the server's signed-feedback path is tested on its own).
        _store_feedback(server)
        conn = {
            "conn_type": "http",
            "host": server.url,
            "password": server.token,
            "extra": {"reviewer_token": server.reviewer_token},
        }
        env = {
            **os.environ,
            REGISTERED_MODEL_KEY: name,
            "AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER": json.dumps(conn),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        conf = transformer_conf(imdb_dir, offline_model)
        log_dir = tmp_path_factory.mktemp("golden-logs")
        terminal = io.StringIO()
        with contextlib.redirect_stdout(terminal):
            result = demo.run_pipeline(conf, env, log_dir)
        yield GoldenRun(result, terminal.getvalue(), log_dir, conf, name, server, stack)
    finally:
        server.stop()
