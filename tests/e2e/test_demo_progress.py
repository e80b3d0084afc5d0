"""``make demo``'s terminal output on real ``dag.test()`` runs: each task's state changes, progress lines,
and for a failure the failed task's log tail and the path of its full log.

Uses ``sentiflow.demo.run_pipeline`` (what ``make demo`` calls) with a small baseline-only conf against the
session stack and a gunicorn model server; the parsing itself is unit-tested in ``test_progress.py``. The
conf is the one ``test_airflow_scheduler.py`` triggers, so ``benchmarks/scheduler_run.py`` compares the two
(``SENTIFLOW_DAG_TEST_RUN_JSON``).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from sentiflow import demo, localstack, supervisor
from tests.dagrun import small_run_conf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_env(stack, imdb_dir, offline_model):
    localstack.airflow_init(stack)
    supervisor.start(stack, localstack.services(stack)["model-server"])
    try:
        yield {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    finally:
        supervisor.stop(stack, "model-server")


def small_conf(imdb_dir: Path, offline_model: Path, **overrides) -> dict:
    return small_run_conf(imdb_dir, offline_model, force_promote=True, **overrides)


def test_a_run_prints_every_task_and_the_progress_lines(
    demo_env, imdb_dir, offline_model, tmp_path: Path, capsys
) -> None:
    conf = small_conf(imdb_dir, offline_model)
    started = time.monotonic()
    result = demo.run_pipeline(conf, demo_env, tmp_path)
    wall_s = time.monotonic() - started
    out = capsys.readouterr().out
    if os.environ.get("SENTIFLOW_DAG_TEST_RUN_JSON"):  # benchmarks/scheduler_run.py: the same run, dag.test()
        record = {"state": result["state"], "wall_s": round(wall_s, 1), "conf": conf}
        Path(os.environ["SENTIFLOW_DAG_TEST_RUN_JSON"]).write_text(json.dumps(record, indent=2) + "\n")
    assert result["state"] == "success", out[-3000:]
    assert len(result["mapped"]["clean_part"]) == 3  # clean: one mapped instance per raw part
    # each task, and each instance of a mapped one (clean_part[0], ...), by its own label
    instances = {
        f"{task_id}[{index}]": state
        for task_id, states in result["mapped"].items()
        for index, state in enumerate(states)
    }
    instances.update({k: v for k, v in result["tasks"].items() if k not in result["mapped"]})
    for label, state in instances.items():
        name = re.escape(label)
        if state == "skipped":
            assert re.search(rf"\] {name}: skipped$", out, re.M), label
        else:
            assert re.search(rf"\] {name}: running$", out, re.M), label
            assert re.search(rf"\] {name}: {state} after \d", out, re.M), label
            assert (tmp_path / f"{label}.log").exists()
    assert re.search(r"\] collect: wrote train [\d,]+ rows", out), out
    assert re.search(r"\] clean: split 1/3 \(train\) 300 -> \d+ rows", out), out
    assert result["logs"] == {"folder": str(tmp_path), "failed": {}}
    assert "Returned value was" not in out  # task logs go to the files, not the terminal


def test_a_failed_task_prints_its_log_tail_and_full_log_path(
    demo_env, imdb_dir, offline_model, tmp_path: Path, capsys
) -> None:
    conf = small_conf(imdb_dir, offline_model, learnin_rate=1e-4)  # misspelt: validate_params fails
    result = demo.run_pipeline(conf, demo_env, tmp_path)
    out = capsys.readouterr().out
    assert result["state"] == "failed"
    assert re.search(r"\] validate_params: failed after \d", out, re.M)
    log = tmp_path / "validate_params.log"
    assert f"---- full log: {log}" in out
    assert "unknown parameter(s) ['learnin_rate']" in out  # the reason, from the log tail
    assert "unknown parameter(s)" in log.read_text()
    assert result["logs"]["failed"] == {"validate_params": str(log)}
