"""The auth app's ini (``sentiflow.security.mlflow_auth_ini``) is what MLflow's own reader understands, and
the file
runs on its own, as the MLflow image runs it (no sentiflow installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sentiflow.security.mlflow_auth_ini import DATABASE_URI_ENV, auth_ini, ensure_database, write_auth_ini

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "include" / "sentiflow" / "security" / "mlflow_auth_ini.py"


def test_mlflow_reads_the_ini_as_written(tmp_path, monkeypatch):
    """A URL-encoded password (``%``) survives MLflow's configparser interpolation."""
    from mlflow.server.auth.config import read_auth_config

    uri = "postgresql+psycopg2://sentiflow:p%40ss%25word@postgres:5432/mlflow_auth"
    path = write_auth_ini(tmp_path / "auth" / "basic_auth.ini", uri, "root")
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "from-the-environment")
    config = read_auth_config()
    assert config.database_uri == uri
    assert config.default_permission == "NO_PERMISSIONS"
    assert (config.admin_username, config.admin_password) == ("root", "from-the-environment")
    assert config.auth_cache_ttl_seconds == 60
    assert "from-the-environment" not in path.read_text()  # the admin password never lands in the file


def test_sqlite_needs_no_database_made():
    assert ensure_database("sqlite:////tmp/auth.db") is False


def test_the_file_runs_without_sentiflow_installed(tmp_path):
    path = tmp_path / "basic_auth.ini"
    env = {"PATH": os.environ["PATH"], DATABASE_URI_ENV: f"sqlite:///{tmp_path / 'auth.db'}"}
    done = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert path.read_text() == auth_ini(env[DATABASE_URI_ENV])
    missing = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and DATABASE_URI_ENV in missing.stderr


def test_writes_racing_on_one_path_all_succeed_and_leave_one_whole_file(tmp_path) -> None:
    """Replicas started together each build the stack's services, each writing the ini: none may fail."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "secrets" / "mlflow-auth.ini"
    with ThreadPoolExecutor(8) as pool:
        written = list(pool.map(lambda i: write_auth_ini(path, f"sqlite:////db/{i}.db", "root"), range(64)))
    assert written == [path] * 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().count("database_uri = ") == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["mlflow-auth.ini"]  # no temporary left
