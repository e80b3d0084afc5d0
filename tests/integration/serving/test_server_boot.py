"""The model server boots on a fresh state folder every time, even on a machine whose cores are all busy.

Two gunicorn workers that both set ``PRAGMA journal_mode=WAL`` on a fresh SQLite feedback database can
fail one of them ("database is locked"), and a worker that fails to boot stops gunicorn. So the schema and
the journal mode are made by the migration step (``serving.store.migrate``, under a file lock, so several
runs at once are safe), and the prediction-id secret once under a file lock.

The race itself is hammered in processes that do exactly what the migration step and then a worker do,
released together by a barrier (many rounds in seconds); a few real gunicorn boots on busy cores check the
whole server. Postgres: ``tests/integration/serving/test_migrations.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from sentiflow.localstack.supervisor import logfile
from sentiflow.settings.server import ServerSettings
from serving.prediction_ids import state_dir_secret
from serving.store.feedback import FeedbackStore
from serving.store.migrate import open_database, upgrade
from serving.store.replicas import ReplicaStore
from tests.devserver import SERVICE, DevServer

pytestmark = pytest.mark.slow

#: The suite's counts; ``benchmarks/boot_race.py`` runs them at full count (20 boots, 25 rounds).
BOOTS = int(os.environ.get("SENTIFLOW_BOOT_RACE_SERVER_BOOTS", "2"))
RACE_ROUNDS = int(os.environ.get("SENTIFLOW_BOOT_RACE_STATE_ROUNDS", "8"))
RACE_PROCESSES = 6
WORKER_REQUESTS = re.compile(r'^sentiflow_server_worker_requests_total\{worker="(\d+)"\} (\S+)$', re.M)


def _open_state_like_a_worker(state_dir: str, barrier, errors) -> None:
    """What ``ServerExtension`` opens at a worker's boot, started at the same instant as the others."""
    try:
        url = ServerSettings(state_dir=Path(state_dir)).resolved_feedback_db_url
        barrier.wait(timeout=60)
        upgrade(url)  # the migration step, run by several at once (one init container per pod)
        db = open_database(url, schema_wait_s=0)
        FeedbackStore(db).count()
        ReplicaStore(db)
        errors.put(("ok", state_dir_secret(Path(state_dir))))
    except Exception:
        errors.put(("error", traceback.format_exc()))


def test_workers_opening_a_fresh_state_folder_together_never_fail(tmp_path) -> None:
    ctx = multiprocessing.get_context("fork")  # gunicorn forks its workers too
    failures, secrets_seen = [], []
    for round_ in range(RACE_ROUNDS):
        state_dir = str(tmp_path / f"race-{round_}")
        barrier, results = ctx.Barrier(RACE_PROCESSES), ctx.Queue()
        procs = [
            ctx.Process(target=_open_state_like_a_worker, args=(state_dir, barrier, results))
            for _ in range(RACE_PROCESSES)
        ]
        for p in procs:
            p.start()
        answers = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        failures += [f"round {round_}: {detail}" for kind, detail in answers if kind == "error"]
        secrets_seen.append({detail for kind, detail in answers if kind == "ok"})
    assert failures == []
    assert all(len(seen) == 1 for seen in secrets_seen)  # one secret per folder, whoever made it


def _answering_workers(server: DevServer) -> set[int]:
    """The pids of the workers that have answered a request (``/metrics`` adds up every live worker)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    text = requests.get(f"{server.url}/metrics", headers=headers, timeout=30).text
    return {int(match.group(1)) for match in WORKER_REQUESTS.finditer(text) if float(match.group(2)) > 0}


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
    log = logfile(stack, SERVICE)
    for i in range(BOOTS):
        start_offset = log.stat().st_size if log.exists() else 0
        server = DevServer(stack, env, state_root=tmp_path / f"state-{i}")
        try:
            server.start()
            assert requests.get(f"{server.url}/health", timeout=30).status_code == 200
            # both workers answer (each opened the fresh feedback DB itself): the per-worker request counts
            # of /metrics name two distinct worker pids, both children of this server's gunicorn master
            answered: set[int] = set()
            for _ in range(200):
                assert requests.get(f"{server.url}/ready", timeout=30).status_code == 503  # no model: unready
                answered = _answering_workers(server)
                if len(answered) == 2:
                    break
            assert server.pid is not None
            children = {child.pid for child in psutil.Process(server.pid).children()}
            assert len(answered) == 2 and answered <= children, (answered, children)
        except Exception as exc:  # count and go on: the test reports all boots, not the first failure
            failures.append(f"boot {i}: {exc}")
        finally:
            server.stop()
        text = log.read_text(errors="replace")[start_offset:]
        if "database is locked" in text or "Worker failed to boot" in text:
            failures.append(f"boot {i}: log says {text[-2000:]}")
    assert failures == []
