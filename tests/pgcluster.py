"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests (what compose and k8s run the server on).

Debian's ``postgresql`` binaries (``scripts/system_deps.sh``) on a free port, data in a temp folder.
``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` system user
(``runuser``); as anyone else, as that user. Stopped with ``pg_ctl stop`` (its own PID file). Each test
module takes a fresh database of its own (``new_database``): a fresh database is what a first rollout
meets, and no module sees another's rows.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

from sentiflow.localstack import stack as localstack

USER = "sentiflow"


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def missing() -> str | None:
    """Why no cluster can start here (None when it can)."""
    if not (pg_bin("initdb") and pg_bin("pg_ctl")):
        return "PostgreSQL binaries missing: run scripts/system_deps.sh"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root needs runuser (initdb refuses root)"
    return None


@dataclass
class PgCluster:
    home: str
    port: int

    @property
    def _as_owner(self) -> list[str]:
        runuser = shutil.which("runuser")
        return [runuser, "-u", "postgres", "--"] if os.geteuid() == 0 and runuser else []

    @classmethod
    def start(cls, max_connections: int = 300) -> PgCluster:
        home = tempfile.mkdtemp(prefix="sentiflow-pg-")
        cluster = cls(home=home, port=localstack.free_port())
        if os.geteuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        data = os.path.join(home, "data")
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        assert initdb and pg_ctl, missing()
        subprocess.run(
            [*cluster._as_owner, initdb, "-D", data, "-A", "trust", "-U", USER],
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {cluster.port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections={max_connections} "
            "-c fsync=off"
        )
        subprocess.run(
            [
                *cluster._as_owner,
                pg_ctl,
                "-D",
                data,
                "-o",
                options,
                "-l",
                os.path.join(home, "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        return cluster

    def stop(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        subprocess.run(
            [*self._as_owner, pg_ctl, "-D", os.path.join(self.home, "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def url(self, database: str = "postgres", driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new, empty database; its URL."""
        import sqlalchemy as sa

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)
