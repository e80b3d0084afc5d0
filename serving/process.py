"""Process-wide set-up of a model-server process: logging and the environment MLflow reads.

Run once by the entrypoint (``serving/gunicorn.conf.py``, in the gunicorn master before it forks the
workers), never by ``create_app``: an app owns its objects, the process owns global state. MLflow takes its
request timeout, retries and S3 credentials only from environment variables, hence ``mlflow_environment``.
"""

from __future__ import annotations

import logging
import os

from sentiflow.settings.components import S3Settings, export_s3_env_for_mlflow
from sentiflow.settings.server import ServerSettings

#: The server's log lines (model loads, deploys, alerts) on stderr, with the worker's pid.
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def mlflow_environment(settings: ServerSettings, s3: S3Settings | None = None) -> dict[str, str]:
    """The MLflow variables the server's settings imply.

    Request timeout and retries: MLflow's own default retries back off for minutes, so a deploy with the
    registry down would hang instead of answering 503. S3: for artifacts MLflow reads straight from the
    bucket (not through the tracking server's proxy), derived from ``SENTIFLOW_S3_*``.
    """
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(settings.registry_timeout_s)),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.registry_max_retries),
        **export_s3_env_for_mlflow(s3 or S3Settings()),
    }


def configure_process(settings: ServerSettings) -> None:
    """Logging, and the MLflow variables (explicitly set ones win)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for key, value in mlflow_environment(settings).items():
        os.environ.setdefault(key, value)


def preloaded_modules() -> tuple[str, ...]:
    """What a first load of each family imports (the transformer's: about 10 s of CPU per process on this
    2-core machine, the TF-IDF's scikit-learn about 3 s): MLflow's pyfunc and every family's
    ``serving_modules``."""
    from sentiflow.families.catalogue import families

    return ("mlflow.pyfunc", *(m for family in families().values() for m in family.serving_modules))


def preload_model_libraries(settings: ServerSettings) -> None:
    """Import ``preloaded_modules()`` in the gunicorn master before it forks (``..._PRELOAD_LIBRARIES``).

    Without it every worker of every replica imports them itself at its first transformer load, all at
    once when the alias moves, and on a small node those imports are most of the time a first move takes
    to converge (``benchmarks/replica_convergence.py``). Importing is fork-safe:
    no thread pool exists until a worker runs a model (each worker then sizes its own threads), and no
    model is loaded here. A library that fails to import is left to the worker, which reports it.
    """
    if not settings.preload_libraries:
        return
    import importlib

    for name in preloaded_modules():
        try:
            importlib.import_module(name)
        except Exception as exc:  # the worker's own load will fail with the full error
            logging.getLogger(__name__).warning("could not preload %s: %s", name, exc)
