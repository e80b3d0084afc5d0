"""The config file of MLflow's ``basic-auth`` app, defined once for the local stack, compose and Kubernetes.

MLflow's auth app reads an ini (``MLFLOW_AUTH_CONFIG_PATH``) whose ``database_uri`` names the user database,
and its admin password only from that file or ``MLFLOW_AUTH_ADMIN_PASSWORD``. In compose and Kubernetes the
database URI carries the Postgres password, which lives in a Secret, so the file cannot be baked into the
image: the MLflow image's entrypoint (``docker/mlflow/entrypoint.sh``) runs this file at start to write it
from the environment, and the local stack (``stack_auth.auth_config``) writes the same text for its SQLite.

Standard library only (the database creation imports SQLAlchemy, which MLflow brings), so the MLflow image,
which has no sentiflow installed, runs it as a plain file: ``python mlflow_auth_ini.py PATH``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The variable that names the auth app's user database (ours, not MLflow's: MLflow reads it from the ini).
DATABASE_URI_ENV = "MLFLOW_AUTH_DATABASE_URI"
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"  # MLflow's own name; it wins over the ini
DEFAULT_ADMIN_USERNAME = "admin"


def auth_ini(database_uri: str, admin_username: str = DEFAULT_ADMIN_USERNAME) -> str:
    """The ini text: ``NO_PERMISSIONS`` by default, the user database, basic auth, a 60 s credential cache.

    ``default_permission = NO_PERMISSIONS``: an authenticated user without a grant reads nothing (anonymous
    requests get 401 everywhere but ``/health``). The admin password is not in the file: MLflow reads it from
    ``MLFLOW_AUTH_ADMIN_PASSWORD``. ``%`` is doubled because MLflow reads the file with ``configparser``'s
    interpolation (a URL-encoded password would otherwise break it).
    """
    return (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri.replace('%', '%%')}\n"
        f"admin_username = {admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # Without it every request runs a PBKDF2 password check: each replica polls the alias every second
        # and a model download is one request per file, so checking each one makes a deploy crawl. A
        # password changed by the provisioning step reaches every MLflow worker within 60 s.
        "auth_cache_ttl_seconds = 60\n"
    )


def write_auth_ini(path: Path, database_uri: str, admin_username: str = DEFAULT_ADMIN_USERNAME) -> Path:
    """Write the ini (mode 0600: it holds the database password) and return its path.

    Written to a private temporary file and renamed over ``path``: several starts at once (replicas of a
    test or a benchmark building their services together) each replace it whole, and none sees it half
    written or fails on the other's file."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(auth_ini(database_uri, admin_username))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def ensure_database(database_uri: str) -> bool:
    """Create the auth app's Postgres database when it does not exist yet; True when it was created.

    MLflow creates its tables, never the database. Creating it here, at each start, also covers a Postgres
    volume made before the auth app was switched on (its init scripts ran once, without this database).
    Other backends (SQLite creates its file itself) are left alone.
    """
    if not database_uri.startswith("postgresql"):
        return False
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_uri)
    name = url.database
    if not name:
        raise ValueError(f"{DATABASE_URI_ENV} names no database")
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists:
                return False
            quoted = engine.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """``python mlflow_auth_ini.py PATH``: the ini at PATH from ``MLFLOW_AUTH_DATABASE_URI``, its database."""
    args = sys.argv[1:] if argv is None else argv
    database_uri = os.environ.get(DATABASE_URI_ENV, "").strip()
    if len(args) != 1 or not database_uri:
        print(f"usage: {DATABASE_URI_ENV}=<database URL> mlflow_auth_ini.py PATH", file=sys.stderr)
        return 2
    admin_username = os.environ.get(ADMIN_USERNAME_ENV) or DEFAULT_ADMIN_USERNAME
    path = write_auth_ini(Path(args[0]), database_uri, admin_username)
    try:
        created = ensure_database(database_uri)
    except Exception as exc:  # a managed Postgres whose user may not create databases: say what to do
        print(
            f"mlflow_auth_ini: cannot check or create the auth database of {DATABASE_URI_ENV} "
            f"({type(exc).__name__}: {exc}); create it once by hand",
            file=sys.stderr,
        )
        return 1
    print(f"mlflow_auth_ini: wrote {path}" + (" and created the auth database" if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
