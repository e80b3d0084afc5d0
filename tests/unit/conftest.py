"""Unit tests run in process: no service, no training.

The fixtures that start a service or build a model (``tests/conftest.py``) are replaced here by ones that
fail the test that asks for them, however it asks (an argument, ``usefixtures``, ``getfixturevalue``), so
`make test-fast` stays quick and a test that needs the stack goes to ``tests/integration/<package>/``.
"""

from __future__ import annotations

import pytest

#: Fixtures of tests/conftest.py that start a service (S3 + MLflow, Postgres) or build a model.
SERVICE_FIXTURES = ("stack", "store", "postgres", "postgres_url", "tiny_model_dir")


def _refusing(name: str):
    def refuse(request: pytest.FixtureRequest) -> None:
        pytest.fail(
            f"{request.node.nodeid} asks for the {name!r} fixture, which starts a service or builds a model: "
            "a unit test runs in process (move it to tests/integration/<package>/)",
            pytrace=False,
        )

    refuse.__name__ = name
    return pytest.fixture(name=name)(refuse)


for _name in SERVICE_FIXTURES:
    globals()[f"_refuse_{_name}"] = _refusing(_name)
