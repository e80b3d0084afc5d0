"""Schemathesis fuzzing of the live model server (gunicorn, real S3/MLflow) with every check (``--checks
all``): the document states exactly what the server enforces, both ways, and no input causes a 5xx.

The suite runs a smaller budget; ``SENTIFLOW_RECORD_FUZZ=1`` runs the full one (well over 1,000 cases) and
records it in ``benchmarks/results/fuzz.json`` and RESULTS.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.devserver import DevServer, own_registered_model, register_tfidf_versions
from tests.fuzz_api import fuzz

pytestmark = pytest.mark.slow

RECORD = bool(os.environ.get("SENTIFLOW_RECORD_FUZZ"))
# per operation and mode (positive, negative): Hypothesis stops early where the input space is small, so
# the recorded budget gives well over 1,000 cases in all, plus the stateful runs; the suite's is smaller
EXAMPLES_PER_MODE = int(os.environ.get("SENTIFLOW_FUZZ_EXAMPLES", "150" if RECORD else "40"))
MIN_CASES = 1000 if RECORD else 300


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory) -> Iterator[DevServer]:
    # its own registered model: other modules release versions of the default one meanwhile
    with own_registered_model("fuzz"):
        yield from _server(stack, tmp_path_factory)


def _server(stack, tmp_path_factory) -> Iterator[DevServer]:
    version = register_tfidf_versions(1)[0]
    env = {
        "SENTIFLOW_SERVER_WORKERS": "2",
        "SENTIFLOW_SERVER_THREADS": "4",
        "SENTIFLOW_SERVER_FEEDBACK_RATE_LIMIT": "100000 per minute",  # the fuzzer is one client
        "SENTIFLOW_SERVER_DEPLOY_TIMEOUT_S": "180",  # caps a fuzzed ?wait=true&timeout=
        "SENTIFLOW_DRIFT_SAMPLES_PREFIX": "production-samples/fuzz-test",
    }
    srv = DevServer(stack, env, state_root=tmp_path_factory.mktemp("fuzz-state")).start()
    try:
        yield srv.serving(version)
    finally:
        srv.stop()


@pytest.mark.timeout(3600)
def test_fuzzing_finds_no_server_error_and_no_schema_violation(server: DevServer) -> None:
    result = fuzz(server.url, server.token, examples=EXAMPLES_PER_MODE, stateful_steps=80 if RECORD else 30)
    if RECORD:
        _record(result)
    report = json.dumps({k: v for k, v in result.items() if k != "per_endpoint"}, indent=1)
    assert result["checks"] == "all"
    assert result["cases"] >= MIN_CASES, report
    assert result["server_errors"] == 0, report
    assert result["failures"] == 0, report
    paths = {label.split(" ", 1)[1] for label in result["per_endpoint"]}
    spec = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    # every endpoint was exercised (schemathesis leaves out the document it was loaded from)
    assert paths == set(spec["paths"]) - {"/openapi.json"}
    # the linked sequences ran (how many a link's feedback was stored is chance: the fuzzer fills the rest)
    assert result["stateful"].get("POST /feedback 422", 0) + result["stateful"].get("POST /predict 200", 0)


@pytest.mark.parametrize(
    ("link", "body"),
    [("FlagPrediction", {"text": "a fine film"}), ("FlagFirstOfTexts", {"texts": ["a dull film", "x"]})],
)
def test_a_client_following_a_documented_link_stores_its_feedback(
    server: DevServer, link: str, body: dict
) -> None:
    spec = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    template = spec["paths"]["/predict"]["post"]["responses"]["200"]["links"][link]["requestBody"]
    predicted = requests.post(f"{server.url}/predict", json=body, timeout=30)
    assert predicted.status_code == 200, predicted.text
    feedback = {key: _resolve(value, body, predicted.json()) for key, value in template.items()}
    stored = requests.post(f"{server.url}/feedback", json=feedback, timeout=30)
    assert stored.status_code == 201, stored.text
    assert stored.json()["text"] == (body.get("text") or body["texts"][0])


def _resolve(value: object, request: dict, response: dict) -> object:
    """A runtime expression (``$request.body#/ptr``, ``$response.body#/ptr``) or a constant, resolved."""
    if not (isinstance(value, str) and value.startswith("$")):
        return value
    source, pointer = value.split("#", 1)
    node: Any = {"$request.body": request, "$response.body": response}[source]
    for part in pointer.strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _record(result: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from _common import record

    rows = "\n".join(
        f"| `{label}` | {r['cases']} | {r['failures']} | {r['server_errors']} |"
        for label, r in result["per_endpoint"].items()
    )
    linked = result["stateful"].get("feedback_accepted_via_link", 0)
    markdown = (
        f"schemathesis {__import__('schemathesis').__version__} with every check (`--checks all`: "
        f"{', '.join(result['check_names'])}) against a live gunicorn model server (2 workers, TF-IDF model) "
        f"and the real S3/MLflow: {EXAMPLES_PER_MODE} positive + {EXAMPLES_PER_MODE} negative generated "
        "cases per operation, then linked sequences (/predict → /feedback with the signed prediction_id). "
        f"**{result['cases']} cases, {result['failures']} failures, {result['server_errors']} server "
        f"errors.** Linked /feedback calls accepted: {linked}. "
        "For POST /feedback a 422 on schema-valid data passes only when it names a signature or label that "
        "does not match (no schema can state a signature; tests/fuzz_api.py). Operations without inputs get "
        "one case; schemathesis leaves out `/openapi.json` itself. Other jobs were running on this machine."
        f"\n\n| operation | cases | failures | server errors |\n| --- | ---: | ---: | ---: |\n{rows}\n"
    )
    record(
        "fuzz",
        result,
        markdown,
        command=f"SENTIFLOW_RECORD_FUZZ=1 SENTIFLOW_FUZZ_EXAMPLES={EXAMPLES_PER_MODE} "
        ".venv/bin/python -m pytest tests/integration/serving/test_fuzz.py",
    )
