"""Fixtures of the compose tests (test_compose.py): docker-compose.yaml as written (``raw``) and as
`compose config` resolves it with .env.example (``resolved``).

Session-scoped: the compose tests were one module that resolved the file once; split by topic, they still
share that one resolution (no test changes it: the schema test breaks a deep copy).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.deployment.compose_file import COMPOSE, ENV_EXAMPLE, compose_config


@pytest.fixture(scope="session")
def resolved() -> dict:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    unset = [line for line in result.stderr.splitlines() if "is not set" in line]
    assert not unset, f".env.example leaves variables unset: {unset}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="session")
def install_set(tmp_path_factory: pytest.TempPathFactory):
    """``install_set("serve")``: bin/ of a clean venv with what that extra's Dockerfile installs (built once
    per session and extra; tests/integration/deployment/install_sets.py)."""
    from tests.integration.deployment.install_sets import build

    built: dict[str, Path] = {}

    def get(extra: str) -> Path:
        if extra not in built:
            built[extra] = build(extra, tmp_path_factory.mktemp(f"install-set-{extra}"))
        return built[extra]

    return get
