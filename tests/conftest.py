"""Shared fixtures: a real local stack (SeaweedFS S3 + MLflow server) on free ports, per test session.

Each pytest session gets its own stack home under a temp dir, so parallel runs never share state, and
stops only the processes it started (by PID). Tests that need the stack take the ``stack`` fixture; the
environment then points every sentiflow component at it (``SENTIFLOW_*``, ``MLFLOW_TRACKING_URI``, Airflow).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentiflow.localstack import stack as localstack
from sentiflow.localstack.stack import StackSettings
from tests import pgcluster
from tests.pgcluster import PgCluster

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
OFFLINE_MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
IMDB_DIR = SHARED / "data" / "imdb"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

#: Files that read one session- or package-scoped run, kept on one worker when the suite runs in parallel.
SHARED_RUNS = {
    "tests/e2e/test_pipeline_e2e.py": "golden",  # the golden pipeline run (tests/e2e/conftest.py)
    "tests/e2e/test_demo_progress.py": "golden",
    "tests/e2e/test_shipped_onnx_e2e.py": "golden",
    "tests/e2e/airflow_local/": "airflow_local",  # one Airflow for the folder
}


def work_unit(nodeid: str) -> str:
    """What one worker runs whole, in file order: a test's file, or the shared run its file reads."""
    path = nodeid.split("::", 1)[0]
    return next((group for prefix, group in SHARED_RUNS.items() if path.startswith(prefix)), path)


#: The fixture that makes each shared run: a test that asks for it must sit in a file of that run's unit.
SHARED_RUN_FIXTURES = {"golden": "golden", "local_airflow": "airflow_local"}


def misplaced_shared_run_readers(items: list[tuple[str, list[str]]]) -> list[str]:
    """Tests (node id, fixture names) that read a shared run from a file ``SHARED_RUNS`` does not place in
    that run's unit: on another worker they would make the run a second time."""
    return [
        f"{nodeid} reads {fixture!r} but SHARED_RUNS does not put its file in {unit!r}"
        for nodeid, fixtures in items
        for fixture, unit in SHARED_RUN_FIXTURES.items()
        if fixture in fixtures and work_unit(nodeid) != unit
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = misplaced_shared_run_readers(
        [(item.nodeid, list(getattr(item, "fixturenames", ()))) for item in items]
    )
    if misplaced:
        raise pytest.UsageError("\n".join(misplaced))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n 2 --dist loadfile`` (``make test``): xdist's file-by-file scheduling, with the files
    of one shared run (``SHARED_RUNS``) as one unit, so that run happens once. A module's tests stay on one
    worker and in file order (its module-scoped services, the order its tests walk them through)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return SharedRunScheduling(config, log)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    """S3 + MLflow running on 127.0.0.1 for this session; env vars point at them, as the pipeline's MLflow
    identity (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, from ``localstack.client_env``)."""
    # Tests register a model per test, so the server's MLflow grants cover every model here
    # ("all"); tests/integration/security/test_mlflow_auth.py checks the per-model grants of a real stack
    # ("served").
    settings = localstack.stack_on_free_ports(tmp_path_factory.mktemp("stack")).model_copy(
        update={"grant_scope": "all"}
    )
    saved = dict(os.environ)
    try:
        localstack.up(settings, ["s3", "mlflow"], with_airflow=False)
        os.environ.update(localstack.client_env(settings))
        yield settings
    finally:
        localstack.down(settings, ["s3", "mlflow", "model-server"])
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def store(stack: StackSettings):
    from sentiflow.storage import ObjectStore

    return ObjectStore()


@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    if not (IMDB_DIR / "train.parquet").exists():
        pytest.fail(f"offline IMDb copy missing at {IMDB_DIR}", pytrace=False)
    return IMDB_DIR


@pytest.fixture(scope="session")
def offline_model() -> Path:
    if not (OFFLINE_MODEL / "config.json").exists():
        pytest.fail(f"offline model missing at {OFFLINE_MODEL}", pytrace=False)
    return OFFLINE_MODEL


def _required(tool: str, binary: str | None) -> str:
    """``binary``, or a failed test naming the missing tool (never a skip)."""
    if binary is None:
        pytest.fail(f"{tool} missing: run scripts/system_deps.sh (as root)", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def nginx() -> str:
    """nginx's binary; a missing one fails the test that needs it (no skip)."""
    from tests.devproxy import nginx_binary

    return _required("nginx", nginx_binary())


@pytest.fixture(scope="session")
def redis_server() -> str:
    """redis-server's binary; a missing one fails the test that needs it (no skip)."""
    from tests.devredis import redis_binary

    return _required("redis-server", redis_binary())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, offline_model: Path) -> Path:
    """A 2-layer, 32-wide random BERT saved with the real tokenizer: a stand-in with the real interfaces."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)  # the same random weights every session (ONNX int8 tests compare numbers)
    tokenizer = AutoTokenizer.from_pretrained(offline_model)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    directory = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """One real PostgreSQL cluster for the session (started on first use); modules take fresh databases."""
    reason = pgcluster.missing()
    if reason:
        pytest.fail(reason)  # not a skip: the Postgres tests are the production shape
    cluster = PgCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster of the module's own (its ``postgres`` database's URL): for tests that
    create databases by name (MLflow's image makes ``mlflow_auth``), which the session's cluster would
    carry over from one module to the next."""
    reason = pgcluster.missing()
    if reason:
        pytest.fail(reason)
    cluster = PgCluster.start()
    try:
        yield cluster.url()
    finally:
        cluster.stop()


def database_url(kind: str, request: pytest.FixtureRequest, folder: Path, *, migrated: bool = True) -> str:
    """A fresh shared database of ``kind`` (``sqlite`` or ``postgres``), migrated unless told otherwise
    (what the migration step does before any server starts)."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'shared.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    if migrated:
        from serving.store.migrate import upgrade

        upgrade(url)
    return url


def migrated_state(state_dir: Path) -> Path:
    """``state_dir`` with its default SQLite database migrated: what `make up` and the test servers' start
    do before a server runs (its workers never create tables). For apps built in-process."""
    from serving.store.migrate import upgrade

    state_dir.mkdir(parents=True, exist_ok=True)
    upgrade(f"sqlite:///{state_dir.resolve() / 'feedback.db'}")
    return state_dir


def migrated_url(url: str) -> str:
    """``url``'s database migrated to head (idempotent); for stores built in-process."""
    from serving.store.migrate import upgrade

    upgrade(url)
    return url
