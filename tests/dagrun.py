"""Run a DAG once through ``sentiflow.orchestration.runner`` in a child process, as the e2e tests do.

A child process gets Airflow's own environment and a fresh DagBag each run, so runs never share
interpreter state. The runner prints one ``RESULT {json}`` line: the run's state and each task's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_dag(dag_id: str, conf: dict, *, env: dict[str, str] | None = None, timeout_s: float = 900) -> dict:
    """``dag_id`` with ``conf``; ``env`` adds to (or overrides) this process's environment.

    The runner's result, plus ``output``: the child's stdout and stderr in order, i.e. every task's log
    (``task_logs`` splits it per task).
    """
    full_env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "sentiflow.orchestration.runner", dag_id, json.dumps(conf)],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
        cwd=REPO,
    )  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line, f"exit {proc.returncode}\n{proc.stdout[-8000:]}"
    return {**json.loads(line[len("RESULT") :]), "output": proc.stdout}


def task_logs(result: dict, log_dir: Path) -> dict[str, str]:
    """Each task's log in a ``run_dag`` result (``demo_monitor.DagTestMonitor``'s split, as ``make demo``
    shows a failed task's log), keyed by task label; the files stay under ``log_dir``."""
    from sentiflow.localstack.demo_monitor import DagTestMonitor

    monitor = DagTestMonitor(log_dir, emit=lambda _line: None)
    for output_line in result["output"].splitlines():
        monitor.feed(output_line)
    monitor.close(result["tasks"])
    return {label: "\n".join(task.lines) for label, task in monitor.finished.items()}


def small_run_conf(imdb_dir: Path, offline_model: Path, **overrides) -> dict:
    """A small IMDb run for the DAG tests: 300 training and 150 evaluation rows, trained on this machine,
    the TF-IDF baseline alone (``train_transformer=True`` and its hyperparameters turn the transformer on),
    an inference check that passes unless a test makes it fail."""
    conf = {
        "dataset": str(imdb_dir),
        "sample_size": 300,
        "eval_sample_size": 150,
        "model_name": str(offline_model),
        "train_transformer": False,
        "train_backend": "local",
        "run_baseline": True,
        "selection_metric": "val_f1",
        "check_min_accuracy": 0.0,
    }
    return {**conf, **overrides}


def failure_message(task_log: str) -> str | None:
    """What a failed task raised with (``AirflowFailException: <message>``, the end of its traceback), or
    None: the sentence a person reads in the task's log in the Airflow UI."""
    marker = "AirflowFailException: "
    found = [line.split(marker, 1)[1] for line in task_log.splitlines() if marker in line]
    return found[-1] if found else None
