"""A registered version, unchanged, served by MLServer's MLflow runtime over the V2 inference protocol.

MLServer is installed the way docs/serving.md says (``sentiflow[model]`` and ``requirements/mlserver.txt``,
in a clean venv) and started with parallel inference workers on ``models:/<name>/<version>``, reading the
registry as the model server's read-only identity. Its V2 ``infer`` answers with the labels and scores our
``/predict`` gives for the same texts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from sentiflow.localstack import stack as localstack
from sentiflow.localstack.supervisor import free_port
from sentiflow.security import stack_auth
from tests.devserver import NEG_TEXTS, POS_TEXTS, DevServer, own_registered_model, register_tfidf_versions
from tests.integration.deployment.install_sets import build_mlserver

pytestmark = pytest.mark.slow
TEXTS = [*POS_TEXTS[:2], *NEG_TEXTS[:2], "an ordinary film"]


@pytest.fixture(scope="module")
def version(stack) -> Iterator[tuple[str, str]]:
    with own_registered_model("mlserver") as name:
        (registered,) = register_tfidf_versions(1)
        yield name, registered


@pytest.fixture(scope="module")
def mlserver(stack, version, tmp_path_factory) -> Iterator[str]:
    name, registered = version
    folder = tmp_path_factory.mktemp("mlserver")
    bin_dir = build_mlserver(folder / "install")
    models = folder / "models"
    (models / "sentiment").mkdir(parents=True)
    http_port = free_port()
    (models / "settings.json").write_text(
        json.dumps(
            {
                "host": localstack.HOST,
                "http_port": http_port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 2,
            }
        )
    )
    (models / "sentiment" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "sentiment",
                "implementation": "mlserver_mlflow.MLflowRuntime",
                "parameters": {"uri": f"models:/{name}/{registered}"},
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(stack_auth.model_server_env(stack.home), PATH=f"{bin_dir}:/usr/bin:/bin")
    env["MLFLOW_TRACKING_URI"] = stack.mlflow_uri
    log = (folder / "mlserver.log").open("w")
    process = subprocess.Popen(
        [str(bin_dir / "mlserver"), "start", str(models)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://{localstack.HOST}:{http_port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, (folder / "mlserver.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/v2/models/sentiment/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"MLServer never became ready: {(folder / 'mlserver.log').read_text()[-3000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def ours(stack, version, tmp_path_factory) -> Iterator[DevServer]:
    server = DevServer(stack, {}, state_root=tmp_path_factory.mktemp("ours")).start()
    try:
        yield server.serving(version[1])
    finally:
        server.stop()


def test_mlserver_v2_infer_answers_what_our_predict_answers(mlserver: str, ours: DevServer) -> None:
    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS), 1], "data": TEXTS}]}
    answer = requests.post(f"{mlserver}/v2/models/sentiment/infer", json=request, timeout=60)
    assert answer.status_code == 200, answer.text
    outputs = {output["name"]: output for output in answer.json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label_id"]["datatype"] == "INT64"
    predicted = requests.post(f"{ours.url}/predict", json={"texts": TEXTS}, timeout=60).json()["predictions"]
    assert outputs["label"]["data"] == [p["label"] for p in predicted]
    assert outputs["label_id"]["data"] == [p["label_id"] for p in predicted]
    for label in predicted[0]["scores"]:
        assert outputs[f"score_{label}"]["data"] == pytest.approx(
            [p["scores"][label] for p in predicted], abs=1e-6
        )
