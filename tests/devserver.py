"""Start and stop a real gunicorn model server on 127.0.0.1 for tests and benchmarks.

Built on ``sentiflow.localstack.stack`` (same argv, PID file and health check as ``make up``), with extra
``SENTIFLOW_SERVER_*`` settings layered on, and a ``kill`` that simulates a crash (SIGKILL, no shutdown).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import StackSettings
from sentiflow.localstack.supervisor import port_in_use, wait_group_gone
from sentiflow.settings.server import ServerSettings

SERVICE = "model-server"


def threads_for_clients(clients: int) -> str:
    """SENTIFLOW_SERVER_THREADS under which ``clients`` keep-alive connections, all on one worker, may all
    wait for a prediction there (a worker keeps ``health_threads`` for /health and sheds the rest as 503s)."""
    return str(clients + ServerSettings.model_fields["health_threads"].default)


@dataclass
class DevServer:
    stack: StackSettings
    env: dict[str, str]
    pid: int | None = None
    #: The server's state folder (its pod's own disk); default the stack's.
    state_root: Path | None = None
    #: Several servers on one stack (replicas): each needs its own name (PID and log file) and port.
    name: str = SERVICE
    port: int | None = None
    #: Run the schema migrations before the server (``localstack``'s init step). False for servers started
    #: together after one migration, as in production, or against a database left un-migrated on purpose.
    migrate: bool = True

    @property
    def url(self) -> str:
        return f"http://{localstack.HOST}:{self.port}" if self.port else self.stack.server_url

    @property
    def token(self) -> str:
        return self.stack.server_token

    @property
    def reviewer_token(self) -> str:
        return self.stack.reviewer_token

    @property
    def state_dir(self) -> Path:
        return self.state_root or self.stack.home / "model-server"

    def start(self) -> DevServer:
        service = localstack.services(self.stack)[SERVICE]
        # Test servers mostly serve TF-IDF versions: importing torch & co. in each master (11 s of CPU) would
        # cost the suite minutes. Servers of transformer versions under load turn it on (test_replicas).
        # A test's load generator is one client (one address) sending as fast as it can: the per-client
        # limits of /predict and /ui/api/* stay out of its way unless the test sets them (test_rate_limit).
        env = {
            "SENTIFLOW_SERVER_PRELOAD_LIBRARIES": "false",
            "SENTIFLOW_SERVER_PREDICT_RATE_LIMIT": "1000000 per minute",
            "SENTIFLOW_SERVER_UI_API_RATE_LIMIT": "1000000 per minute",
            **service.env,
            **self.env,
        }
        if self.state_root is not None:
            env["SENTIFLOW_SERVER_STATE_DIR"] = str(self.state_root)
        service = replace(service, name=self.name, env=env, init=service.init if self.migrate else None)
        if self.port:
            bind = f"{localstack.HOST}:{self.port}"
            argv = [
                bind if arg == f"{localstack.HOST}:{self.stack.server_port}" else arg for arg in service.argv
            ]
            service = replace(
                service, argv=argv, ports=(self.port,), health=supervisor.http_ok(f"{self.url}/health")
            )
        self.pid = supervisor.start(self.stack, service)
        return self

    def stop(self) -> None:
        supervisor.stop(self.stack, self.name)
        self.pid = None

    def release(self, version: str, timeout_s: float = 120) -> dict:
        """``release`` of ``version`` to this server: the pipeline's alias move, then every replica serves
        it; ``/replicas`` once they do."""
        return release(
            self.url,
            version,
            token=self.token,
            timeout_s=timeout_s,
            alias=self.env.get("SENTIFLOW_MLFLOW_CHAMPION_ALIAS")
            or self.env.get("SENTIFLOW_SERVER_FOLLOW_ALIAS"),
            name=self.env.get("SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"),
        )

    def serving(self, version: str, timeout_s: float = 120) -> DevServer:
        """Release ``version`` and wait until it is served (a fixture's set-up); fails the test otherwise."""
        self.release(version, timeout_s)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no graceful shutdown, like a crash or an OOM kill."""
        pid = supervisor.running_pid(self.stack, self.name)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            # every worker, not only the master: they hold the port. On busy cores the kernel can take
            # seconds to tear a killed group down; until the port is free a restart would find it taken.
            wait_group_gone(pid, 60)
            port = self.port or self.stack.server_port
            deadline = time.monotonic() + 60
            while port_in_use(port) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.pid = None


def promote(version: str, *, alias: str | None = None, name: str | None = None) -> tuple[Any, Any, Any]:
    """The pipeline's promotion of ``version`` (``release.flow.promote``: its approval signed with this
    process's signing key, then the alias moved), without waiting for any server; ``flow.finish`` or
    ``flow.roll_back`` completes it. Returns (MLflow client, its settings, the aliases from before).
    ``alias``: another alias than champion; ``name``: another registered model than
    ``SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME``."""
    from sentiflow import registry
    from sentiflow.release import flow
    from sentiflow.settings.components import MLflowSettings

    settings = MLflowSettings()
    if alias is not None:
        settings = settings.model_copy(
            update={"champion_alias": alias, "previous_alias": f"{alias}-previous"}
        )
    if name is not None:
        settings = settings.model_copy(update={"registered_model_name": name})
    client = registry.mlflow_client(settings)
    prior = flow.promote(client, settings, str(version), reason="a test's release")
    return client, settings, prior


def make_champion(version: str, *, alias: str | None = None, name: str | None = None) -> None:
    """``promote`` and its release completed at once (no server to wait for): what a fixture that needs
    an approved champion does."""
    from sentiflow.release import flow

    client, settings, _ = promote(version, alias=alias, name=name)
    flow.finish(client, settings)


def release(
    url: str,
    version: str,
    *,
    token: str | None = None,
    timeout_s: float = 120,
    alias: str | None = None,
    name: str | None = None,
) -> dict:
    """What the pipeline's release does to the served model, nothing more: sign the version's approval and
    move the followed alias to it with ``sentiflow.release.flow.promote`` (as the pipeline's MLflow identity
    and signing key, this process's), then wait until every live replica behind ``url`` serves it
    (``ModelServerClient.wait_for_replicas``).

    Returns ``/replicas`` once they all do. When they do not (a replica reports a failed load of ``version``:
    ``ReplicaLoadError``; or ``timeout_s`` passes: ``ModelServerError``), the release's own rollback
    (``flow.roll_back``) puts the aliases back and the error is raised. ``alias``: the one the server
    follows when it is not the champion; ``name``: its registered model when not the process's default.
    """
    from sentiflow.release import flow
    from sentiflow.serving_client import ModelServerClient

    client, settings, prior = promote(version, alias=alias, name=name)
    try:
        answer = ModelServerClient(url, token, timeout_s=60).wait_for_replicas(
            str(version), timeout_s=timeout_s, poll_s=0.2
        )
    except Exception as exc:
        flow.roll_back(
            client, settings, prior, f"test release of version {version} failed: {exc}", attempts=1
        )
        raise
    flow.finish(client, settings)
    return answer


POS_TEXTS = ["a wonderful moving film", "great acting and a great story", "loved it, wonderful", "great fun"]
NEG_TEXTS = ["dull and too long", "badly acted, boring", "boring plot, dull acting", "awful, boring film"]


def register_tfidf_versions(
    count: int, C_values: tuple[float, ...] = (1.0, 4.0, 16.0), metrics: list[dict[str, float]] | None = None
) -> list[str]:
    """Register ``count`` small TF-IDF versions (different C, so different models); seconds each.

    For tests and smoke checks: the server treats them exactly like transformer versions. Each is logged and
    signed by the pipeline's ``log_classifier``; ``metrics[i]`` are logged on version i's run (what the gate
    reads, e.g. ``val_f1``).
    """
    import mlflow

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    settings = MLflowSettings()
    mlflow.set_experiment(settings.experiment_name)
    versions = []
    for i in range(count):
        clf = TfidfClassifier.build(["negative", "positive"], C=C_values[i % len(C_values)])
        clf.fit(NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12)
        with mlflow.start_run():
            if metrics:
                mlflow.log_metrics(metrics[i])
            info = log_classifier(clf, registered_model_name=settings.registered_model_name)
        versions.append(str(info.registered_model_version))
    return versions


def register_unfitted_version() -> str:
    """A version that loads but cannot predict (an unfitted pipeline): its warm-up fails wherever it loads."""
    import tempfile

    import mlflow

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import CLASSIFIER_ARTIFACT, SentimentPyfunc, save_classifier
    from sentiflow.settings.components import MLflowSettings

    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run():
        directory = save_classifier(TfidfClassifier.build(["negative", "positive"]), Path(tmp) / "c")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SentimentPyfunc(),
            artifacts={CLASSIFIER_ARTIFACT: str(directory)},
            pip_requirements=["scikit-learn"],
            registered_model_name=MLflowSettings().registered_model_name,
        )
    return str(info.registered_model_version)


THREE = ["negative", "neutral", "positive"]
THREE_WORDS = {
    0: ["awful", "boring", "dreadful"],
    1: ["okay", "average", "plain"],
    2: ["wonderful", "lovely", "great"],
}
THREE_FILLER = ["the", "film", "story", "cast", "plot", "was", "a"]


def three_class_rows(n: int, offset: int) -> Any:
    """Rows whose class is carried by one word each (a TF-IDF model learns them from a few dozen)."""
    import pandas as pd

    from sentiflow import names

    rows = [
        (
            " ".join(
                (
                    THREE_FILLER[(i + offset) % 7],
                    THREE_WORDS[i % 3][(i // 3) % 3],
                    THREE_FILLER[(i * 3 + offset) % 7],
                )
            ),
            i % 3,
        )
        for i in range(n)
    ]
    return pd.DataFrame(rows, columns=[names.TEXT_COLUMN, names.LABEL_COLUMN])


def register_three_class_version(store, model_name: str) -> str:
    """A three-class TF-IDF version of ``model_name`` trained on a snapshot in S3 that its run names."""
    import mlflow

    from sentiflow import names
    from sentiflow.data.snapshot import write_snapshot
    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    frames = {
        "train": three_class_rows(60, 0),
        "validation": three_class_rows(30, 1),
        "test": three_class_rows(30, 2),
    }
    snapshot = f"three-class-{model_name}"
    manifest_uri = write_snapshot(
        store, store.uri("datasets", snapshot, "clean"), frames, kind="clean", run_id=snapshot,
        source={}, label_names=THREE,
    )  # fmt: skip
    train = frames["train"]
    clf = TfidfClassifier.build(THREE, C=16.0).fit(train[names.TEXT_COLUMN], train[names.LABEL_COLUMN])
    mlflow.set_experiment(MLflowSettings().experiment_name)
    with mlflow.start_run():
        mlflow.set_tag(names.TAG_DATASET_MANIFEST, manifest_uri)
        mlflow.log_metrics({names.VAL_F1: 0.95, names.split_metric("test", "accuracy"): 1.0})
        info = log_classifier(clf, registered_model_name=model_name)
    return str(info.registered_model_version)


@contextmanager
def own_registered_model(prefix: str) -> Iterator[str]:
    """The caller's own registered model (``SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME``) while the block runs.

    Test modules share the session's MLflow, and releases (``release``) move ``champion``: a module
    that needs a registry it alone controls takes its own model name, restored afterwards.
    """
    key = "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME"
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    saved = os.environ.get(key)
    os.environ[key] = name
    try:
        yield name
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def assert_serves_shipped_int8_here(served: dict) -> None:
    """``GET /model`` of a server process on this machine: the version's shipped int8 file where this CPU
    computes it exactly, else PyTorch and the reason (``onnx_runtime.int8_exact_here``)."""
    from sentiflow.families.transformer.onnx_runtime import NO_VNNI, int8_exact_here

    if int8_exact_here():
        assert served["runtime"] == "onnx-int8" and served["runtime_source"] == "shipped"
        assert served["runtime_fallback"] is None
    else:
        assert served["runtime"] == "torch" and NO_VNNI in served["runtime_fallback"]
