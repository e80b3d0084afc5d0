"""``make demo``'s terminal output on real ``dag.test()`` runs: each task's state changes, progress lines,
and for a failure the failed task's log tail and the path of its full log.

The happy path is the golden run (``tests/e2e/conftest.py``), which runs through
``sentiflow.localstack.demo.run_pipeline`` (what ``make demo`` calls); the failure runs the same function
with a misspelt
parameter, which fails the run before any work. The parsing itself is unit-tested in ``test_progress.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sentiflow.localstack import demo
from sentiflow.localstack import stack as localstack
from tests.dagrun import small_run_conf
from tests.e2e.conftest import GoldenRun

pytestmark = pytest.mark.slow


def test_a_run_prints_every_task_and_the_progress_lines(golden: GoldenRun) -> None:
    result, out, log_dir = golden.result, golden.terminal, golden.log_dir
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
            assert (log_dir / f"{label}.log").exists()
    assert re.search(r"\] collect: wrote train [\d,]+ rows", out), out
    assert re.search(r"\] clean: split 1/3 \(train\) 300 -> \d+ rows", out), out
    assert re.search(r"\] train_local: train: epoch 1 done at step \d+/\d+", out), out  # fine-tuning
    assert result["logs"] == {"folder": str(log_dir), "failed": {}}
    assert "Returned value was" not in out  # task logs go to the files, not the terminal


def test_a_misspelt_parameter_fails_the_run_before_any_work_and_prints_why(
    stack, imdb_dir, offline_model, tmp_path: Path, capsys
) -> None:
    localstack.airflow_init(stack)
    conf = small_run_conf(imdb_dir, offline_model, learnin_rate=1e-4)  # misspelt: validate_params fails
    result = demo.run_pipeline(conf, {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}, tmp_path)
    out = capsys.readouterr().out
    assert result["state"] == "failed"
    assert result["tasks"]["validate_params"] == "failed"
    assert result["tasks"].get("collect") in (None, "upstream_failed")  # no work after the failed check
    assert re.search(r"\] validate_params: failed after \d", out, re.M)
    log = tmp_path / "validate_params.log"
    assert f"---- full log: {log}" in out
    assert "unknown parameter(s) ['learnin_rate']" in out  # the reason, from the log tail
    assert "unknown parameter(s)" in log.read_text()
    assert result["logs"]["failed"] == {"validate_params": str(log)}
