"""The golden run's transformer version on a fresh replica: served from the int8 file the pipeline shipped.

The pipeline built that file portably, opened it and checked it against PyTorch before signing the version
(``sentiflow.families.transformer.onnx_runtime.ship_onnx_models``). A model server of its own (its own
process, disk and
followed alias, so the golden run's ``champion`` does not move) deploys the version: it verifies and opens
the shipped file as it is, and builds nothing. No training run of its own: it reads the golden run's.
"""

from __future__ import annotations

import pytest
import requests

from sentiflow import names, registry
from sentiflow.localstack import stack as localstack
from sentiflow.settings.components import MLflowSettings
from tests.devserver import DevServer, assert_serves_shipped_int8_here
from tests.e2e.conftest import REGISTERED_MODEL_KEY, GoldenRun

pytestmark = pytest.mark.slow


def test_the_pipelines_transformer_version_is_served_from_its_shipped_int8_file(
    golden: GoldenRun, tmp_path
) -> None:
    settings = MLflowSettings(registered_model_name=golden.registered_model_name)
    client = registry.mlflow_client(settings)
    candidates = golden.result["xcom"]["select_best.decision"]["candidates"]
    versions = [client.get_model_version(settings.registered_model_name, v) for v in candidates]
    (version,) = [v for v in versions if v.tags.get(names.TAG_MODEL_FAMILY) == names.FAMILY_TRANSFORMER]
    assert client.get_run(version.run_id).data.tags[names.TAG_ONNX_SHIPPED] == "onnx-int8"

    server = DevServer(
        golden.stack,
        env={
            REGISTERED_MODEL_KEY: settings.registered_model_name,
            "SENTIFLOW_MLFLOW_CHAMPION_ALIAS": "shipped-onnx-probe",
            "SENTIFLOW_SERVER_WORKERS": "1",
        },
        name="shipped-onnx-server",
        port=localstack.free_port(),
        state_root=tmp_path / "state",
    ).start()
    try:
        server.serving(str(version.version), timeout_s=300)
        served = requests.get(f"{server.url}/model", timeout=10).json()
        answer = requests.post(f"{server.url}/predict", json={"texts": ["A moving, funny film."]}, timeout=60)
    finally:
        server.stop()
    assert served["version"] == str(version.version)
    assert_serves_shipped_int8_here(served)
    assert not (server.state_dir / "onnx").exists()  # nothing exported or quantized on the replica
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in served["label_names"]
