"""The one Airflow of this folder's tests: ``make airflow`` (``sentiflow.localstack.airflow_standalone
up``), started once.

``local_airflow`` is package-scoped: the ``make airflow`` assertions, the REST trigger tests and the scheduler
run share one ``airflow standalone`` (``deployment.py`` says how it is started). Its teardown runs ``down``,
after this folder's last test, and asserts that it stopped everything by PID: that assertion is the last one
these tests make against the deployment.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sentiflow.localstack.stack import StackSettings
from tests.e2e.airflow_local import deployment
from tests.e2e.airflow_local.deployment import LocalAirflow


@pytest.fixture(scope="package")
def local_airflow(stack: StackSettings) -> Iterator[LocalAirflow]:
    env, started = deployment.up(stack)
    try:
        airflow = deployment.came_up(stack, env, started)
        yield airflow
    finally:
        stopped, server = deployment.down(env)
    deployment.assert_stopped_by_pid(airflow, stopped)
    assert "model-server  stopped" in server.stdout, deployment.output(server)
