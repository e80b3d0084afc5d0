"""Schemathesis fuzzing of the live model server (gunicorn, real S3/MLflow): no 5xx, responses as documented.

``SENTIFLOW_RECORD_FUZZ=1`` also records the run in ``benchmarks/results/fuzz.json`` and RESULTS.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.devserver import DevServer, register_tfidf_versions
from tests.fuzz_api import fuzz

pytestmark = pytest.mark.slow

# per operation and mode (positive, negative): Hypothesis stops early where the input space is small, so
# this is set to give well over 1,000 cases in all, plus the stateful runs
EXAMPLES_PER_MODE = int(os.environ.get("SENTIFLOW_FUZZ_EXAMPLES", "150"))
MIN_CASES = 1000


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory) -> Iterator[DevServer]:
    version = register_tfidf_versions(1)[0]
    env = {
        "SENTIFLOW_SERVER_WORKERS": "2",
        "SENTIFLOW_SERVER_THREADS": "4",
        "SENTIFLOW_SERVER_FEEDBACK_RATE_LIMIT": "100000 per minute",  # the fuzzer is one client
        "SENTIFLOW_SERVER_DEPLOY_TIMEOUT_S": "180",  # caps a fuzzed ?wait=true&timeout=
        "SENTIFLOW_DRIFT_SAMPLES_PREFIX": "samples-fuzz-test",
    }
    srv = DevServer(stack, env, state_root=tmp_path_factory.mktemp("fuzz-state")).start()
    try:
        yield srv.serving(version)
    finally:
        srv.stop()


@pytest.mark.timeout(3600)
def test_fuzzing_finds_no_server_error_and_no_schema_violation(server: DevServer) -> None:
    result = fuzz(server.url, server.token, examples=EXAMPLES_PER_MODE)
    if os.environ.get("SENTIFLOW_RECORD_FUZZ"):
        _record(result)
    report = json.dumps({k: v for k, v in result.items() if k != "per_endpoint"}, indent=1)
    assert result["cases"] >= MIN_CASES, report
    assert result["server_errors"] == 0, report
    assert result["schema_violations"] == 0, report
    paths = {label.split(" ", 1)[1] for label in result["per_endpoint"]}
    spec = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    # every endpoint was exercised (schemathesis leaves out the document it was loaded from)
    assert paths == set(spec["paths"]) - {"/openapi.json"}
    assert result["stateful"].get("feedback_accepted_via_link", 0) > 0  # the link carried a signed id


def _record(result: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from _common import record

    rows = "\n".join(
        f"| `{label}` | {r['cases']} | {r['server_errors']} | {r['schema_violations']} |"
        for label, r in result["per_endpoint"].items()
    )
    markdown = (
        f"schemathesis {__import__('schemathesis').__version__} against a live gunicorn model server (2 "
        f"workers, TF-IDF model) and the real S3/MLflow: {EXAMPLES_PER_MODE} positive + "
        f"{EXAMPLES_PER_MODE} negative generated cases per operation, then linked sequences "
        f"(/predict → /feedback with the signed prediction_id). **{result['cases']} cases, "
        f"{result['server_errors']} server errors, {result['schema_violations']} schema violations.** "
        f"Linked /feedback calls accepted: {result['stateful'].get('feedback_accepted_via_link', 0)}. "
        "Operations without inputs get one case (Hypothesis has nothing to vary, and no negative case "
        "exists); schemathesis leaves out `/openapi.json` itself. Other jobs were running on this "
        "machine.\n\n"
        f"| operation | cases | server errors | schema violations |\n| --- | ---: | ---: | ---: |\n{rows}\n"
    )
    record(
        "fuzz",
        result,
        markdown,
        command="SENTIFLOW_RECORD_FUZZ=1 .venv/bin/python -m pytest tests/integration/serving/test_fuzz.py",
    )
