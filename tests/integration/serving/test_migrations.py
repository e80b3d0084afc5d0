"""The shared database's schema comes from the Alembic migrations, run once by one step.

Against a real SQLite file and a real PostgreSQL (``postgres`` fixture):

- the migrations build exactly the tables ``serving/store/db.py`` defines (Alembic's own comparison finds
  no difference), with ``uq_feedback_prediction_id``; they run again as a no-op, down and up again;
- ``0003`` drops the deployments table of a database the old ``POST /deploy`` wrote to, other rows kept;
- migration runs started together (one init container per pod) all succeed, one after the other;
- a real gunicorn worker facing an un-migrated database does not create a table: it waits its bounded
  time and fails to boot with a message naming the command to run;
- replicas of gunicorn workers started at the same instant against a fresh Postgres, each running its own
  migration step as it starts: every worker boots (the race that left one replica dead).

The migration runs' race (without the advisory lock, two runs both create the tables of a fresh database
and one fails) is shown at the lowest level by the four runs started together. The boot test shows that
every worker of several replicas boots after their concurrent migration steps: once here, 2 replicas of 2
workers; ``benchmarks/boot_race.py`` runs it at full count (10 rounds x 3 replicas x 2 workers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import requests
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from serving.store import migrate
from serving.store.db import Database, metadata
from tests.conftest import REPO_ROOT, database_url
from tests.devserver import DevServer

ROUNDS = int(os.environ.get("SENTIFLOW_BOOT_RACE_ROUNDS", "1"))
REPLICAS = int(os.environ.get("SENTIFLOW_BOOT_RACE_REPLICAS", "2"))
WORKERS = int(os.environ.get("SENTIFLOW_BOOT_RACE_WORKERS", "2"))


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request, tmp_path) -> str:
    return database_url(request.param, request, tmp_path, migrated=False)


def differences(url: str) -> list:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        db.dispose()


def test_the_migrations_build_exactly_the_tables_of_db_py(fresh_url):
    assert migrate.upgrade(fresh_url) == migrate.head()
    assert differences(fresh_url) == []
    db = Database(fresh_url)
    try:
        uniques = sa.inspect(db.engine).get_unique_constraints("feedback")
        assert {"name": "uq_feedback_prediction_id", "column_names": ["prediction_id"]} in [
            {k: u[k] for k in ("name", "column_names")} for u in uniques
        ]
    finally:
        db.dispose()
    assert migrate.upgrade(fresh_url) == migrate.head()  # again: nothing to do
    assert migrate.downgrade(fresh_url, "base") is None  # and down, and up again
    assert migrate.upgrade(fresh_url) == migrate.head() and differences(fresh_url) == []


def test_0003_drops_the_deployments_table_and_keeps_the_rest(fresh_url):
    """A database the old ``POST /deploy`` wrote to: at head its deployments table is gone, every other row
    stays; down to ``0002`` the table is back, empty."""
    assert migrate.upgrade(fresh_url, "0002") == "0002"
    db = Database(fresh_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO server_deployments (id, alias, version, requested_at, status) "
                    "VALUES ('d1', 'champion', '5', 1.0, 'succeeded')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO feedback (created_at, text, predicted_label, correct, verified) "
                    "VALUES (CURRENT_TIMESTAMP, 'kept', 'positive', true, false)"
                )
            )
    finally:
        db.dispose()
    assert migrate.upgrade(fresh_url) == migrate.head() and differences(fresh_url) == []
    db = Database(fresh_url)
    try:
        assert "server_deployments" not in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT text FROM feedback")).scalars().all() == ["kept"]
    finally:
        db.dispose()
    assert migrate.downgrade(fresh_url, "0002") == "0002"
    db = Database(fresh_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM server_deployments")).scalar() == 0
    finally:
        db.dispose()


def test_a_worker_waits_for_the_migrations_then_names_the_command(fresh_url):
    with pytest.raises(migrate.SchemaBehindError, match=r"python -m serving\.store\.migrate upgrade"):
        migrate.open_database(fresh_url, schema_wait_s=0.5)
    timer = threading.Timer(1.0, migrate.upgrade, args=(fresh_url,))  # the step runs while it waits
    timer.start()
    try:
        migrate.open_database(fresh_url, schema_wait_s=60).dispose()
    finally:
        timer.join()


def test_migration_runs_started_together_all_succeed(request, tmp_path):
    url = database_url("postgres", request, tmp_path, migrated=False)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "serving.store.migrate", "upgrade", "--url", url],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [(run.wait(120), run.stdout.read() if run.stdout else "") for run in runs]
    assert [code for code, _ in outputs] == [0, 0, 0, 0], outputs
    assert differences(url) == []


SERVER_ENV = {
    "SENTIFLOW_SERVER_WORKERS": str(WORKERS),
    "SENTIFLOW_SERVER_THREADS": "2",
    "SENTIFLOW_SERVER_RELOAD_POLL_S": "0.5",
    # no model load: this is about the boot (a missing alias leaves a worker up, unready)
    "SENTIFLOW_SERVER_FOLLOW_ALIAS": "no-such-alias-migrations-test",
}


def _servers(
    stack, tmp_path, url: str, tag: str, count: int, *, migrate: bool = False, **env: str
) -> list[DevServer]:
    return [
        DevServer(
            stack,
            {**SERVER_ENV, "SENTIFLOW_SERVER_FEEDBACK_DB_URL": url, **env},
            state_root=tmp_path / f"state-{tag}-{i}",
            name=f"migrations-{tag}-{i}",
            port=localstack.free_port(),
            migrate=migrate,
        )
        for i in range(count)
    ]


@pytest.mark.slow
def test_a_worker_facing_an_unmigrated_database_fails_with_the_command(stack, request, tmp_path):
    url = database_url("postgres", request, tmp_path, migrated=False)
    (server,) = _servers(stack, tmp_path, url, "unmigrated", 1, SENTIFLOW_SERVER_SCHEMA_WAIT_S="2")
    with pytest.raises(RuntimeError) as failed:
        server.start()
    message = str(failed.value)
    assert "exited" in message, message
    # the whole log: the start error quotes only its last lines, and two workers' tracebacks can push the
    # first one's message out of them
    log = supervisor.logfile(stack, server.name).read_text(errors="replace")
    assert "python -m serving.store.migrate upgrade" in log and "schema revision none" in log, log[-3000:]
    db = Database(url)
    try:
        assert sa.inspect(db.engine).get_table_names() == []  # the worker created nothing
    finally:
        db.dispose()


def _start_together(servers: list[DevServer]) -> list[str]:
    barrier, errors = threading.Barrier(len(servers)), []

    def start(server: DevServer) -> None:
        barrier.wait()
        try:
            server.start()
        except Exception as exc:
            errors.append(f"{server.name}: {exc}")

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _workers_seen(server: DevServer) -> dict[str, int]:
    answer = requests.get(f"{server.url}/replicas", timeout=10).json()
    return {r["replica_id"]: len(r["workers"]) for r in answer["replicas"]}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_replicas_of_workers_boot_together_on_a_fresh_postgres(stack, request, tmp_path):
    import time

    failures: list[str] = []
    for round_ in range(ROUNDS):
        url = database_url("postgres", request, tmp_path, migrated=False)
        # each replica runs its own migration step as it starts, all at once (k8s: the `migrate` init
        # container of every pod of a fresh rollout): one migrates, the others queue on the advisory lock
        servers = _servers(stack, tmp_path, url, f"r{round_}", REPLICAS, migrate=True)
        try:
            failures += [f"round {round_}: {e}" for e in _start_together(servers)]
            deadline, seen = time.monotonic() + 60, {}
            while time.monotonic() < deadline:
                seen = _workers_seen(servers[0])
                if len(seen) == REPLICAS and set(seen.values()) == {WORKERS}:
                    break
                time.sleep(0.5)
            if len(seen) != REPLICAS or set(seen.values()) != {WORKERS}:
                failures.append(f"round {round_}: live replicas and their workers {seen}")
        finally:
            for server in servers:  # the round's database is thrown away: no graceful exit needed
                server.kill()
                server.stop()  # removes the PID file
        for server in servers:
            text = supervisor.logfile(stack, server.name).read_text(errors="replace")
            if "Worker failed to boot" in text or "Traceback" in text:
                failures.append(f"round {round_}: {server.name} log: {text[-1500:]}")
    assert failures == []
