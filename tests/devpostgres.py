"""A throwaway PostgreSQL on 127.0.0.1 for tests: what compose and k8s run for the server's rows and MLflow.

Run as the ``postgres`` system user (``initdb`` refuses root) with ``trust`` authentication, so any password
in a URL is accepted: tests can hand over production-shaped URLs. Stopped with ``pg_ctl stop`` (its own PID
file) when the fixture ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from sentiflow import localstack


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg2://sentiflow@127.0.0.1:<port>/postgres`` of a fresh cluster, for the module."""
    initdb, pg_ctl, runuser = _pg_bin("initdb"), _pg_bin("pg_ctl"), shutil.which("runuser")
    if not (initdb and pg_ctl and runuser) or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL binaries and root (to run them as the postgres user)")
    home = tempfile.mkdtemp(prefix="sentiflow-pg-")
    shutil.chown(home, "postgres", "postgres")
    data, port = os.path.join(home, "data"), localstack.free_port()
    as_pg = [runuser, "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, initdb, "-D", data, "-A", "trust", "-U", "sentiflow"], check=True, capture_output=True
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_pg, pg_ctl, "-D", data, "-o", options, "-l", os.path.join(home, "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://sentiflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
