"""The model server boots on a fresh state folder every time, even on a machine whose cores are all busy.

Two gunicorn workers opening a fresh SQLite feedback database at once used to fail one of them on
``PRAGMA journal_mode=WAL`` ("database is locked"), and a worker that fails to boot stops gunicorn. The
schema, the journal mode and the prediction-id secret are now made once, under a file lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from sentiflow.localstack import _logfile
from tests.devserver import SERVICE, DevServer

pytestmark = pytest.mark.slow

BOOTS = 20


@pytest.fixture
def busy_cores() -> Iterator[list[int]]:
    """One spinning process per core (started here, stopped by PID)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


@pytest.mark.timeout(1800)
def test_boots_on_fresh_state_folders_while_the_cores_are_busy(stack, tmp_path, busy_cores) -> None:
    env = {
        "SENTIFLOW_SERVER_WORKERS": "2",
        "SENTIFLOW_SERVER_THREADS": "2",
        # no model load: this is about the boot itself (a missing alias leaves the server up, unready)
        "SENTIFLOW_SERVER_FOLLOW_ALIAS": "no-such-alias-boot-test",
    }
    failures = []
    log = _logfile(stack, SERVICE)
    for i in range(BOOTS):
        start_offset = log.stat().st_size if log.exists() else 0
        server = DevServer(stack, env, state_root=tmp_path / f"state-{i}")
        try:
            server.start()
            assert requests.get(f"{server.url}/health", timeout=30).status_code == 200
            # both workers answer (each opened the fresh feedback DB itself)
            pids = {requests.get(f"{server.url}/ready", timeout=30).status_code for _ in range(6)}
            assert pids == {503}
        except Exception as exc:  # count and go on: the test reports all boots, not the first failure
            failures.append(f"boot {i}: {exc}")
        finally:
            server.stop()
        text = log.read_text(errors="replace")[start_offset:]
        if "database is locked" in text or "Worker failed to boot" in text:
            failures.append(f"boot {i}: log says {text[-2000:]}")
    assert failures == []
