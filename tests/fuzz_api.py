"""Schemathesis against a live model server: generated requests for every operation, plus linked sequences.

``fuzz(base_url, token, ...)`` loads the server's own ``/openapi.json``, draws ``examples`` positive and
``examples`` negative (schema-violating) cases per operation with Hypothesis, sends each, and runs every
check schemathesis has (``--checks all``): no 5xx, status, media type, headers and body as documented, data
the document allows is accepted and data it forbids is refused, the Allow header of a 405, unsupported
methods, auth that is not ignored, and the stateful checks. Then it runs the stateful machine built from the
document's links (``/predict`` → ``/feedback`` with the signed ``prediction_id``). It never stops at the
first failure: it returns counts per operation (``cases``, ``failures`` with the check names,
``server_errors``) and a few examples of each failure, which the suite asserts on and
``benchmarks/results/fuzz.json`` records.

Two things no schema can state: whether a ``prediction_id`` is a signature this server made for this text
(and ``true_label`` one of that prediction's labels), and whether a registry version that exists can be
loaded (its signature verifies, its files are whole). So a 422 on data the document allows is accepted
only for the first: on ``POST /feedback`` when its error is one of ``SIGNED_FEEDBACK_ERRORS``.
``contract_acceptance`` replaces ``positive_data_acceptance`` there and is stricter than a status list: any
other 422 still fails. The fuzzed server runs without Airflow, so a valid ``POST /deploy`` (and any
``/deploy/status``) is answered 503 ``airflow_not_configured`` naming the missing setting, or
``airflow_unavailable`` naming the Airflow that does not answer: those answers on those operations
(``CONTRACT_503``) is neither a server error nor a refusal of valid data; its body is
still checked against the document, and any other 5xx still counts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

load_all_checks()
#: Every check schemathesis registers: the CLI's ``--checks all``.
ALL_CHECKS = list(CHECKS.get_all())
CHECK_NAMES = sorted(check.__name__ for check in ALL_CHECKS)
#: The errors of a well-formed feedback whose prediction_id or labels do not match a signed prediction.
SIGNED_FEEDBACK_ERRORS = frozenset({"invalid_prediction_id", "prediction_id_mismatch", "unknown_label"})
MAX_EXAMPLES_KEPT = 5


def _signed_feedback_mismatch(body: dict[str, Any]) -> bool:
    return body.get("error") in SIGNED_FEEDBACK_ERRORS


#: Per operation: the 422 answers to schema-valid data that only the server's state can decide.
CONTRACT_422 = {"POST /feedback": _signed_feedback_mismatch}


def _airflow_not_configured(body: dict[str, Any]) -> bool:
    """A release request to a server without Airflow: the message names the setting to set, or the
    Airflow address that does not answer."""
    message = str(body.get("message", ""))
    if body.get("error") == "airflow_not_configured":
        return "SENTIFLOW_SERVER_AIRFLOW_" in message
    return body.get("error") == "airflow_unavailable" and "unreachable" in message


#: Per operation: the 503 answers that the server's configuration decides, not the input.
CONTRACT_503 = {"POST /deploy": _airflow_not_configured, "GET /deploy/status": _airflow_not_configured}
#: The checks such a 503 skips: it is documented, and the release it asks for cannot run here.
SKIPPED_FOR_CONTRACT_503 = {"not_a_server_error", "positive_data_acceptance", "contract_acceptance"}


def _expected_503(label: str, response: Any) -> bool:
    if response.status_code != 503 or label not in CONTRACT_503:
        return False
    try:
        body = response.json() or {}
    except ValueError:
        return False
    return isinstance(body, dict) and CONTRACT_503[label](body)


def contract_acceptance(ctx: Any, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except a 422 that ``CONTRACT_422`` allows for this operation passes;
    any other 422 on schema-valid data fails with its body."""
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code == 422:
        body = response.json() or {}
        if CONTRACT_422[case.operation.label](body):
            return None
        raise AssertionError(f"valid request refused with 422: {response.text[:300]}")
    return positive_data_acceptance(ctx, response, case)


def _checks_for(label: str) -> list[Any]:
    if label not in CONTRACT_422:
        return ALL_CHECKS
    return [c for c in ALL_CHECKS if c is not positive_data_acceptance] + [contract_acceptance]


class Tally:
    def __init__(self) -> None:
        self.per_operation: dict[str, dict[str, Any]] = defaultdict(
            lambda: {
                "cases": 0,
                "failures": 0,
                "server_errors": 0,
                "failed_checks": defaultdict(int),
                "statuses": defaultdict(int),
            }
        )
        self.examples: list[str] = []

    def record(self, case: Any, response: Any, **transport: Any) -> None:
        label = case.operation.label
        row = self.per_operation[label]
        row["cases"] += 1
        row["statuses"][str(response.status_code)] += 1
        expected_503 = _expected_503(label, response)
        if response.status_code >= 500 and not expected_503:
            row["server_errors"] += 1
        checks = _checks_for(label)
        if expected_503:
            checks = [c for c in checks if c.__name__ not in SKIPPED_FOR_CONTRACT_503]
        try:
            case.validate_response(response, checks=checks, **transport)
        except (Failure, FailureGroup, AssertionError) as exc:
            row["failures"] += 1
            failures = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            for failure in failures:
                row["failed_checks"][getattr(failure, "title", type(failure).__name__)] += 1
            self._example(f"{label} → {response.status_code}: {str(exc)[:700]}")

    def _example(self, text: str) -> None:
        if len(self.examples) < 4 * MAX_EXAMPLES_KEPT:
            self.examples.append(text)

    def summary(self) -> dict[str, Any]:
        rows = {
            label: {
                **row,
                "statuses": dict(sorted(row["statuses"].items())),
                "failed_checks": dict(sorted(row["failed_checks"].items())),
            }
            for label, row in sorted(self.per_operation.items())
        }
        return {
            "checks": "all",
            "check_names": CHECK_NAMES,
            "cases": sum(r["cases"] for r in rows.values()),
            "failures": sum(r["failures"] for r in rows.values()),
            "server_errors": sum(r["server_errors"] for r in rows.values()),
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
                tally.record(case, response, headers=headers, transport_kwargs={"base_url": base_url})

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
            tally.record(
                case,
                response,
                headers=headers,
                transport_kwargs={"base_url": base_url},
                recorder=self.recorder,
            )
            links[f"{case.operation.label} {response.status_code}"] += 1
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
