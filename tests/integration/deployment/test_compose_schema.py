"""docker-compose.yaml resolves with .env.example (`docker-compose config`, no engine) into the expected
services, a missing secret fails with its name, and the file, raw and resolved, validates against the Compose
Specification JSON schema (vendored in check-jsonschema), which catches a misspelled key.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.deployment.compose_file import ENV_EXAMPLE, compose_config, env_file_values


# --- the file resolves and is valid ------------------------------------------------------------------
def test_compose_resolves_with_env_example(resolved):
    expected = {
        "postgres",
        "seaweedfs",
        "s3-init",
        "mlflow",
        "mlflow-init",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "redis",
        "airflow-worker",
        "model-server",
        "model-server-migrate",
    }
    assert set(resolved["services"]) == expected
    # The celery workers are opt-in; redis is not: it holds the model server's shared rate-limit counters.
    assert "profiles" not in resolved["services"]["redis"]
    assert "ports" not in resolved["services"]["redis"]
    server = resolved["services"]["model-server"]
    assert server["environment"]["SENTIFLOW_SERVER_RATE_LIMIT_STORAGE_URI"] == "redis://redis:6379"
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert resolved["services"]["airflow-worker"]["profiles"] == ["celery"]
    assert "profiles" not in resolved["services"]["airflow-scheduler"]


def test_missing_secret_fails_with_its_name(tmp_path):
    values = env_file_values(ENV_EXAMPLE)
    del values["POSTGRES_PASSWORD"]
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = compose_config(env_file)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def _compose_schema_validator():
    import importlib.resources

    import jsonschema

    try:
        text = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
        schema = json.loads(text.read_text())
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.fail("check-jsonschema (which vendors the Compose Specification schema) is not installed")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("which", ["raw", "resolved"])
def test_compose_matches_compose_specification_schema(which, raw, request):
    doc = raw if which == "raw" else request.getfixturevalue("resolved")
    errors = [f"{e.json_path}: {e.message[:200]}" for e in _compose_schema_validator().iter_errors(doc)]
    assert not errors, errors


def test_schema_catches_a_broken_file(raw):
    """The schema check is real: a misspelled key fails it."""
    broken = json.loads(json.dumps(raw))
    broken["services"]["mlflow"]["helthcheck"] = broken["services"]["mlflow"].pop("healthcheck")
    assert list(_compose_schema_validator().iter_errors(broken))
