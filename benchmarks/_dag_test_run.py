"""The scheduler benchmark's twin: the same small run under ``dag.test()``, as ``make demo`` runs it.

Collected by ``benchmarks/scheduler_run.py`` only (``pytest -p tests.conftest``: the suite's stack fixture),
never by the suite: the suite's one ``dag.test()`` happy path is the golden run (``tests/e2e/conftest.py``).
It writes ``SENTIFLOW_DAG_TEST_RUN_JSON``: the run's state, wall seconds and conf.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sentiflow.localstack import demo, supervisor
from sentiflow.localstack import stack as localstack
from tests.dagrun import small_run_conf


def test_the_scheduler_runs_conf_under_dag_test(stack, imdb_dir, offline_model, tmp_path: Path) -> None:
    localstack.airflow_init(stack)
    supervisor.start(stack, localstack.services(stack)["model-server"])
    try:
        conf = small_run_conf(imdb_dir, offline_model, force_promote=True)
        started = time.monotonic()
        result = demo.run_pipeline(conf, {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}, tmp_path)
        record = {"state": result["state"], "wall_s": round(time.monotonic() - started, 1), "conf": conf}
        Path(os.environ["SENTIFLOW_DAG_TEST_RUN_JSON"]).write_text(json.dumps(record, indent=2) + "\n")
        assert result["state"] == "success", result["tasks"]
    finally:
        supervisor.stop(stack, "model-server")
