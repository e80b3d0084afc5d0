"""Production refuses placeholder or empty credentials in every component, naming the variable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sentiflow.security.credentials_check import (
    COMPONENTS,
    InsecureSettingsError,
    check_component,
    is_placeholder,
    problems,
)
from tests.integration.deployment.compose_file import ENV_EXAMPLE, env_file_values

ROOT = Path(__file__).resolve().parents[3]
PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"


def good_env(tmp_path: Path) -> dict[str, str]:
    """Real-looking values for every variable every component reads."""
    public = tmp_path / "signing.pub"
    public.write_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    conn = json.dumps({"conn_type": "http", "host": "http://x", "login": "u", "password": "r3al-conn-pw-41"})
    return {
        "SENTIFLOW_ENV": "production",
        "SENTIFLOW_SERVER_ADMIN_TOKEN": "tok-8d1f0a77c2",
        "SENTIFLOW_SERVER_PREDICTION_SECRET": "pred-93ab11e0",
        "SENTIFLOW_DRIFT_HASH_KEY": "drift-55c0e1",
        "SENTIFLOW_S3_SECRET_ACCESS_KEY": "s3-2f9e7c1d",
        "MLFLOW_TRACKING_PASSWORD": "mlflow-user-6b2a",
        "SENTIFLOW_SERVER_AIRFLOW_PASSWORD": "airflow-releaser-8c9d",
        "SENTIFLOW_SERVER_FEEDBACK_DB_URL": "postgresql://sentiflow:pg-7a1c@postgres/model_server",
        "SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS": json.dumps([str(public)]),
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-0c3e",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-1d2e",
        "AWS_SECRET_ACCESS_KEY": "aws-9f8e",
        "MLFLOW_BACKEND_STORE_URI": "postgresql://sentiflow:pg-7a1c@postgres/mlflow",
        "MLFLOW_AUTH_DATABASE_URI": "postgresql://sentiflow:pg-7a1c@postgres/mlflow_auth",
        "SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD": "admin-0c3e",
        "SENTIFLOW_MLFLOW_AUTH_PIPELINE_PASSWORD": "pipeline-4e5f",
        "SENTIFLOW_MLFLOW_AUTH_SERVER_PASSWORD": "server-6a7b",
        "SENTIFLOW_MLFLOW_PASSWORD": "pipeline-4e5f",
        "AIRFLOW__CORE__FERNET_KEY": "fernet-3b4c",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-5d6e",
        "AIRFLOW__API__SECRET_KEY": "api-7f80",
        "_AIRFLOW_WWW_USER_PASSWORD": "airflow-9a0b",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://sentiflow:pg-7a1c@postgres:5432/airflow",
        "AIRFLOW_CONN_SENTIFLOW_S3": conn,
        "AIRFLOW_CONN_SENTIFLOW_MLFLOW": conn,
        "AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER": conn,
        "SENTIFLOW_SIGNING_PRIVATE_KEY": PEM,
        "POSTGRES_PASSWORD": "pg-7a1c",
        "AIRFLOW_DB_PASSWORD": "pg-airflow-1e2f",
        "MLFLOW_DB_PASSWORD": "pg-mlflow-3a4b",
        "MODEL_SERVER_DB_PASSWORD": "pg-server-5c6d",
        "S3_ADMIN_SECRET_KEY": "s3-admin-2c3d",
        "S3_MLFLOW_SECRET_KEY": "s3-mlflow-4e5f",
        "S3_MODEL_SERVER_SECRET_KEY": "s3-server-6a7b",
    }


def test_every_secret_of_env_example_is_refused():
    values = env_file_values(ENV_EXAMPLE)
    secrets = {k: v for k, v in values.items() if any(w in k for w in ("PASSWORD", "SECRET", "TOKEN", "KEY"))}
    assert len(secrets) >= 9, secrets
    for name, value in secrets.items():
        if name.endswith(("_ACCESS_KEY_ID", "_ACCESS_KEY", "_PUBLIC_KEYS")):
            continue  # a user name (access key id) or public keys, not a secret (their check: below)
        assert is_placeholder(value), name


def test_env_examples_signing_key_placeholders_are_refused():
    """.env.example's public-key list parses (a JSON list) but names a placeholder; its private key is one."""
    values = env_file_values(ENV_EXAMPLE)
    public = values["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"].strip("'")
    env = {"SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS": public, "SENTIFLOW_ENV": "production"}
    assert json.loads(public)  # the settings accept the file as it is; production does not
    assert any("SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS" in p for p in problems("model-server", env))
    assert any("SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS" in p for p in problems("airflow", env))
    env["SENTIFLOW_SIGNING_PRIVATE_KEY"] = values["SENTIFLOW_SIGNING_PRIVATE_KEY"]
    for component in ("trainer", "airflow"):
        assert any("SENTIFLOW_SIGNING_PRIVATE_KEY is a placeholder" in p for p in problems(component, env))


@pytest.mark.parametrize(
    "value", ["", "  ", "CHANGE_ME", "change-me-anything", "sentiflow-secret", "minioadmin", None]
)
def test_placeholders(value):
    assert is_placeholder(value)


def test_good_values_pass_for_every_component(tmp_path):
    env = good_env(tmp_path)
    for component in COMPONENTS:
        check_component(component, env)


@pytest.mark.parametrize(
    ("component", "spec"), [(component, spec) for component, specs in COMPONENTS.items() for spec in specs]
)
def test_each_components_check_names_each_bad_variable(tmp_path, component, spec):
    env = good_env(tmp_path)
    name = spec.split(":")[1] if ":" in spec else spec
    if spec.startswith("url:"):
        env[name] = env[name].replace("pg-7a1c", "change-me-postgres")
    elif spec.startswith("conn:"):
        env[name] = json.dumps(
            {"conn_type": "http", "host": "http://x", "login": "u", "password": "CHANGE_ME"}
        )
    elif spec.startswith("keys:"):
        env[name] = "[]"
    elif spec.startswith(("key:", "optkey:")):
        env[name] = "change-me-signing-key"
    elif spec.startswith("off:"):
        env[name] = "true"
    else:
        env[name] = "change-me"
    with pytest.raises(InsecureSettingsError, match=name):
        check_component(component, env)
    assert any(name in p for p in problems(component, env))


def test_missing_private_key_file_is_refused(tmp_path):
    env = good_env(tmp_path)
    del env["SENTIFLOW_SIGNING_PRIVATE_KEY"]
    env["SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"] = str(tmp_path / "absent.pem")
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"):
        check_component("trainer", env)
    (tmp_path / "present.pem").write_text(PEM)
    env["SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"] = str(tmp_path / "present.pem")
    check_component("trainer", env)


def test_public_keys_must_be_pem_texts_or_existing_files(tmp_path):
    env = good_env(tmp_path)
    env["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"] = json.dumps([str(tmp_path / "absent.pem")])
    with pytest.raises(InsecureSettingsError, match=r"no PEM text and no existing file: .*absent\.pem"):
        check_component("model-server", env)
    for bad in (
        "CHANGE_ME",
        '["CHANGE_ME"]',
        '["-----BEGIN PUBLIC KEY-----\\nabc", "change-me"]',
        "{}",
        '"-----BEGIN PUBLIC KEY-----"',
    ):
        env["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"] = bad
        with pytest.raises(InsecureSettingsError, match="lists no public key"):
            check_component("model-server", env)
    env["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"] = json.dumps(["-----BEGIN PUBLIC KEY-----\nabc\n"])
    check_component("model-server", env)


def test_airflow_needs_the_public_keys_and_signs_only_where_the_key_is_given(tmp_path):
    """Every Airflow container verifies (the gate), only those that run tasks sign: the private key may be
    unset there, but when given it must be a PEM text or a key file that exists."""
    env = good_env(tmp_path)
    del env["SENTIFLOW_SIGNING_PRIVATE_KEY"]
    check_component("airflow", env)  # the API server, DAG processor, triggerer: no key
    env["SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"] = str(tmp_path / "absent.pem")
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"):
        check_component("airflow", env)
    (tmp_path / "present.pem").write_text(PEM)
    env["SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"] = str(tmp_path / "present.pem")
    check_component("airflow", env)
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"):
        check_component("trainer", {**env, "SENTIFLOW_SIGNING_PRIVATE_KEY_PATH": ""})  # training must sign
    del env["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"]
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"):
        check_component("airflow", env)


def test_an_optional_credential_may_be_unset_but_never_a_placeholder(tmp_path):
    """Without Airflow's password the server refuses manual releases (503); with a placeholder it must not
    start."""
    env = good_env(tmp_path)
    for unset in ("", "  ", None):
        if unset is None:
            env.pop("SENTIFLOW_SERVER_AIRFLOW_PASSWORD")
        else:
            env["SENTIFLOW_SERVER_AIRFLOW_PASSWORD"] = unset
        check_component("model-server", env)
    env["SENTIFLOW_SERVER_AIRFLOW_PASSWORD"] = "change-me-airflow-releaser"
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SERVER_AIRFLOW_PASSWORD is a placeholder"):
        check_component("model-server", env)


def test_production_refuses_loading_unsigned_models_where_versions_are_loaded(tmp_path):
    """The development switch that loads versions without a public key never runs in production: not on
    the server, not in Airflow (the gate loads versions too)."""
    from sentiflow.settings.server import ServerSettings

    name = "SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS"
    assert "allow_unsigned_models" in ServerSettings.model_fields  # the setting this switch is
    assert f"{ServerSettings.model_config['env_prefix']}ALLOW_UNSIGNED_MODELS" == name
    env = good_env(tmp_path)
    for off in ("", "false", "0", "no"):
        for component in ("model-server", "airflow"):
            check_component(component, {**env, name: off})
    for on in ("true", "1", "yes", "True"):
        for component in ("model-server", "airflow"):
            with pytest.raises(InsecureSettingsError, match=f"{name} is on"):
                check_component(component, {**env, name: on})
    check_component("model-server", {**env, name: "true", "SENTIFLOW_ENV": "development"})


def test_development_accepts_anything(tmp_path):
    env = {**good_env(tmp_path), "SENTIFLOW_ENV": "development", "MLFLOW_TRACKING_PASSWORD": ""}
    check_component("model-server", env)


def test_the_module_runs_without_sentiflow_installed(tmp_path):
    """The MLflow image runs the file itself (standard library only), and exits 1 naming the variable."""
    env = {
        **good_env(tmp_path),
        "MLFLOW_AUTH_ADMIN_PASSWORD": "change-me-mlflow-admin",
        "PATH": "/usr/bin:/bin",
    }
    script = ROOT / "include" / "sentiflow" / "security" / "credentials_check.py"
    done = subprocess.run(
        [sys.executable, "-I", str(script), "mlflow"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "MLFLOW_AUTH_ADMIN_PASSWORD is empty or a placeholder" in done.stderr
