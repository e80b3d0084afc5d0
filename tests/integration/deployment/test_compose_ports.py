"""What the host sees: only what a person opens (Airflow's UI, MLflow's UI, the model server) is published,
on loopback by default; HOST_BIND opens the UIs but not MLflow; and published ports parse in both forms
`compose config` writes.
"""

from __future__ import annotations

import yaml

from tests.integration.deployment.compose_file import (
    ENV_EXAMPLE,
    Published,
    compose_config,
    env_file_values,
    published,
)

# --- what the host sees -----------------------------------------------------------------------------------
PERSON_FACING = {"airflow-apiserver": 8080, "mlflow": 5000, "model-server": 8000}


def test_only_what_a_person_opens_is_published_on_loopback(resolved):
    """Airflow UI, MLflow UI, the model server (API and web page): published on 127.0.0.1 by default.
    Nothing else: not MinIO's API or console, not Postgres, not Redis."""
    ports = {name: published(svc) for name, svc in resolved["services"].items() if svc.get("ports")}
    assert {name: [p.target for p in ps] for name, ps in ports.items()} == {
        name: [target] for name, target in PERSON_FACING.items()
    }
    for name, ps in ports.items():
        assert all(p.host_ip == "127.0.0.1" for p in ps), (name, ps)
    assert not resolved["services"]["seaweedfs"].get("ports")  # S3, filer, master: the containers' only


def test_host_bind_opens_the_uis_but_not_mlflow(tmp_path):
    """HOST_BIND=0.0.0.0 publishes Airflow and the model server on all interfaces; MLflow (its login form is
    an admin tool) keeps its own switch and stays on loopback."""
    values = env_file_values(ENV_EXAMPLE)
    values["HOST_BIND"] = "0.0.0.0"
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {p.host_ip for p in published(services["airflow-apiserver"])} == {"0.0.0.0"}
    assert {p.host_ip for p in published(services["model-server"])} == {"0.0.0.0"}
    assert {p.host_ip for p in published(services["mlflow"])} == {"127.0.0.1"}
    assert not services["seaweedfs"].get("ports")


def test_published_ports_parse_in_both_compose_forms():
    assert published({"ports": ["127.0.0.1:8000-8002:8000/tcp", "9000:9000"]}) == [
        Published("127.0.0.1", "8000-8002", 8000),
        Published("0.0.0.0", "9000", 9000),
    ]
    assert published({"ports": [{"target": 8080, "published": "8080", "host_ip": "127.0.0.1"}]}) == [
        Published("127.0.0.1", "8080", 8080)
    ]
