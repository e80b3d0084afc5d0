"""Schemathesis against a live model server: generated requests for every operation, plus linked sequences.

``fuzz(base_url, token, ...)`` loads the server's own ``/openapi.json``, draws ``examples`` positive and
``examples`` negative (schema-violating) cases per operation with Hypothesis, sends each, and runs
schemathesis' checks: no 5xx, the status is documented, the media type is documented and the body matches
the response schema. Then it runs the stateful machine built from the document's links (``/predict`` →
``/feedback`` with the signed ``prediction_id``). It never stops at the first failure: it returns counts
per operation (``cases``, ``server_errors``, ``schema_violations``) and a few examples of each failure,
which the suite asserts on and ``benchmarks/results/fuzz.json`` records.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES_KEPT = 5


class Tally:
    def __init__(self) -> None:
        self.per_operation: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"cases": 0, "server_errors": 0, "schema_violations": 0, "statuses": defaultdict(int)}
        )
        self.examples: list[str] = []

    def record(self, case: Any, response: Any) -> None:
        row = self.per_operation[case.operation.label]
        row["cases"] += 1
        row["statuses"][str(response.status_code)] += 1
        if response.status_code >= 500:
            row["server_errors"] += 1
            self._example(f"{case.operation.label} → {response.status_code}: {response.text[:300]}")
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except (Failure, FailureGroup, AssertionError) as exc:
            row["schema_violations"] += 1
            self._example(f"{case.operation.label} → {response.status_code}: {str(exc)[:500]}")

    def _example(self, text: str) -> None:
        if len(self.examples) < 4 * MAX_EXAMPLES_KEPT:
            self.examples.append(text)

    def summary(self) -> dict[str, Any]:
        rows = {
            label: {**row, "statuses": dict(sorted(row["statuses"].items()))}  # type: ignore[dict-item]
            for label, row in sorted(self.per_operation.items())
        }
        return {
            "cases": sum(r["cases"] for r in rows.values()),
            "server_errors": sum(r["server_errors"] for r in rows.values()),
            "schema_violations": sum(r["schema_violations"] for r in rows.values()),
            "per_endpoint": rows,
            "examples": self.examples,
        }


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure in CI reproduces here
        phases=[Phase.explicit, Phase.generate],  # no shrinking: we count, we do not minimise
        suppress_health_check=list(HealthCheck),
    )


def fuzz(base_url: str, token: str, *, examples: int = 60, stateful_steps: int = 80) -> dict[str, Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @_settings(examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=base_url, headers=headers, timeout=60)
                tally.record(case, response)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # no way to violate the schema of an operation without inputs (GET /health): positive only
                tally.per_operation[operation.label]["skipped_negative"] = True
    stateful = _stateful(schema, base_url, headers, tally, stateful_steps)
    return {**tally.summary(), "stateful": stateful}


def _stateful(schema: Any, base_url: str, headers: dict, tally: Tally, steps: int) -> dict[str, Any]:
    """Linked sequences (e.g. /predict then /feedback citing its prediction_id); counted like the rest."""
    links: dict[str, int] = defaultdict(int)

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Any, **kwargs: Any) -> Any:
            return case.call(base_url=base_url, headers=headers, timeout=60, **kwargs)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            tally.record(case, response)
            if case.operation.label == "POST /feedback" and response.status_code == 201:
                links["feedback_accepted_via_link"] += 1

    settings = hypothesis.settings(
        max_examples=steps,
        stateful_step_count=5,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    hypothesis.stateful.run_state_machine_as_test(Machine, settings=settings)
    return dict(links)
