"""SENTIFLOW_ENV=production refuses placeholder secrets; compose and k8s set it; MLflow stays on loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from sentiflow.settings.components import DriftSettings, RuntimeEnvironment
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.production import InsecureSettingsError, check_production_secrets, is_placeholder
from tests.integration.deployment.compose_file import (
    ENV_EXAMPLE,
    compose_config,
    env_file_values,
    service_env,
)

ROOT = Path(__file__).resolve().parents[3]
PROD = RuntimeEnvironment(env="production")
GOOD = {"admin_token": "a" * 24 + "1", "prediction_secret": "b" * 24 + "2"}
GOOD_DRIFT = DriftSettings(hash_key="c" * 24 + "3")


@pytest.mark.parametrize(
    "value", ["", "change-me-server-token", "CHANGE_ME", "Change_Me", "sentiflow-local-token", "  "]
)
def test_placeholders_are_recognised(value):
    assert is_placeholder(value)


def test_production_refuses_each_placeholder_and_names_it(tmp_path):
    check_production_secrets(ServerSettings(state_dir=tmp_path, **GOOD), GOOD_DRIFT, PROD)  # fine
    cases = {
        "SENTIFLOW_SERVER_ADMIN_TOKEN": ServerSettings(state_dir=tmp_path, **{**GOOD, "admin_token": None}),
        "SENTIFLOW_SERVER_PREDICTION_SECRET": ServerSettings(
            state_dir=tmp_path, **{**GOOD, "prediction_secret": "change-me-prediction-secret"}
        ),
    }
    for name, settings in cases.items():
        with pytest.raises(InsecureSettingsError, match=name):
            check_production_secrets(settings, GOOD_DRIFT, PROD)
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_DRIFT_HASH_KEY is empty or a placeholder"):
        check_production_secrets(ServerSettings(state_dir=tmp_path, **GOOD), DriftSettings(), PROD)
    reused = DriftSettings(hash_key=GOOD["admin_token"])
    with pytest.raises(InsecureSettingsError, match="same value as SENTIFLOW_SERVER_ADMIN_TOKEN"):
        check_production_secrets(ServerSettings(state_dir=tmp_path, **GOOD), reused, PROD)


def test_production_refuses_the_unsigned_models_switch(tmp_path):
    unsigned = ServerSettings(state_dir=tmp_path, allow_unsigned_models=True, **GOOD)
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SERVER_ALLOW_UNSIGNED_MODELS is on"):
        check_production_secrets(unsigned, GOOD_DRIFT, PROD)
    check_production_secrets(unsigned, GOOD_DRIFT, RuntimeEnvironment())  # a development machine


def test_every_production_manifest_and_values_file_sets_production_mode():
    """Kubernetes: the server's and MLflow's ConfigMap, the training pods' ConfigMap and the Airflow chart's
    values (every Airflow pod, and through it the training pods it starts)."""
    for path, name in (("k8s/settings.yaml", "sentiflow-settings"), ("k8s/training.yaml", None)):
        maps = [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d and d["kind"] == "ConfigMap"]
        assert maps and all(m["data"]["SENTIFLOW_ENV"] == "production" for m in maps), path
        assert name is None or any(m["metadata"]["name"] == name for m in maps)
    values = yaml.safe_load((ROOT / "k8s/airflow-values.yaml").read_text())
    assert {"name": "SENTIFLOW_ENV", "value": "production"} in values["env"]
    trainer = yaml.safe_load((ROOT / "k8s/trainer-pod-template.yaml").read_text())
    sources = [s["configMapRef"]["name"] for s in trainer["spec"]["containers"][0]["envFrom"]]
    assert sources == ["sentiflow-trainer-settings"]  # the training.yaml ConfigMap above


def test_development_accepts_the_local_defaults(tmp_path):
    check_production_secrets(ServerSettings(state_dir=tmp_path), DriftSettings(), RuntimeEnvironment())


def test_the_server_does_not_start_in_production_with_the_env_example_token(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIFLOW_ENV", "production")
    monkeypatch.setenv("SENTIFLOW_DRIFT_HASH_KEY", "a-real-drift-key-0123456789")
    settings = ServerSettings(
        state_dir=tmp_path,
        admin_token=env_file_values(ENV_EXAMPLE)["SENTIFLOW_SERVER_ADMIN_TOKEN"],
        prediction_secret="a-real-prediction-secret-0123",
    )
    with pytest.raises(InsecureSettingsError, match="SENTIFLOW_SERVER_ADMIN_TOKEN"):
        create_app(settings, start=False)


def test_init_env_output_passes_the_production_check(tmp_path, monkeypatch):
    out = tmp_path / "env"
    subprocess.run(["bash", str(ROOT / "docker/init-env.sh"), str(out)], check=True, capture_output=True)
    values = env_file_values(out)
    for key in (
        "SENTIFLOW_SERVER_ADMIN_TOKEN",
        "SENTIFLOW_SERVER_PREDICTION_SECRET",
        "SENTIFLOW_DRIFT_HASH_KEY",
    ):
        monkeypatch.setenv(key, values[key])
    check_production_secrets(ServerSettings(state_dir=tmp_path), DriftSettings(), PROD)


def _compose_or_skip():
    result = compose_config(ENV_EXAMPLE)
    if result.returncode != 0 and "not found" in result.stderr.lower():
        pytest.fail("no docker compose here")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_runs_in_production_mode_and_keeps_mlflow_on_loopback():
    resolved = _compose_or_skip()
    for service in ("model-server", "airflow-scheduler"):
        env = service_env(resolved, service)
        assert env["SENTIFLOW_ENV"] == "production"
        assert env["SENTIFLOW_DRIFT_HASH_KEY"]
    assert service_env(resolved, "model-server")["SENTIFLOW_SERVER_PREDICTION_SECRET"]
    ports = resolved["services"]["mlflow"]["ports"]
    published = [p.get("host_ip") if isinstance(p, dict) else str(p).rsplit(":", 2)[0] for p in ports]
    assert published == ["127.0.0.1"], ports


def test_k8s_sets_production_and_provides_every_secret():
    settings = yaml.safe_load((ROOT / "k8s/settings.yaml").read_text())
    assert settings["data"]["SENTIFLOW_ENV"] == "production"
    server = (ROOT / "k8s/model-server.yaml").read_text()
    secrets = yaml.safe_load_all((ROOT / "k8s/secret.template.yaml").read_text())
    template = next(s for s in secrets if s and s["metadata"]["name"] == "sentiflow-credentials")
    for env, key in [
        ("SENTIFLOW_SERVER_PREDICTION_SECRET", "server_prediction_secret"),
        ("SENTIFLOW_DRIFT_HASH_KEY", "drift_hash_key"),
    ]:
        assert env in server and key in template["stringData"]
