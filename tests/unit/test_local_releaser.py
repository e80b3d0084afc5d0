"""The local stack's model server can ask the local Airflow for release runs: the same user on both sides.

``make airflow``'s Airflow (the simple auth manager) gets the server's user with role ``user`` and the
stack's generated password, seeded into the passwords file it keeps; the model server is started with that
user, that password and Airflow's URL.
"""

from __future__ import annotations

import json
from pathlib import Path

from sentiflow.localstack import airflow_standalone
from sentiflow.localstack import stack as localstack
from sentiflow.localstack.stack import StackSettings
from sentiflow.security import stack_auth


def test_the_server_and_airflow_share_the_releaser_user(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", raising=False)
    stack = StackSettings(home=tmp_path)
    env = airflow_standalone.airflow_env(stack, 8123, offline={})
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,sentiflow-releaser:user"
    server = localstack.services(stack)["model-server"].env
    assert server["SENTIFLOW_SERVER_AIRFLOW_URL"] == f"http://127.0.0.1:{stack.airflow_port}"
    assert server["SENTIFLOW_SERVER_AIRFLOW_USERNAME"] == stack_auth.AIRFLOW_RELEASER

    passwords = stack.airflow_home / airflow_standalone.PASSWORDS_FILE
    passwords.parent.mkdir(parents=True)
    passwords.write_text(json.dumps({"admin": "generated-by-airflow"}))
    airflow_standalone.seed_releaser_password(stack)
    seeded = json.loads(passwords.read_text())
    assert seeded == {
        "admin": "generated-by-airflow",
        "sentiflow-releaser": server["SENTIFLOW_SERVER_AIRFLOW_PASSWORD"],
    }
    assert passwords.stat().st_mode & 0o777 == 0o600
    airflow_standalone.seed_releaser_password(stack)  # again: nothing changes
    assert json.loads(passwords.read_text()) == seeded


def test_users_the_caller_configured_are_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
    env = airflow_standalone.airflow_env(StackSettings(home=tmp_path), 8123, offline={})
    assert (
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,viewer:viewer,sentiflow-releaser:user"
    )
