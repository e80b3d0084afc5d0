"""Run the training entrypoint (``python -m sentiflow.train``) as a child process of the Airflow worker.

The same command the GPU pod runs, with the same arguments; settings travel as environment variables
built from the Airflow connections. A child process keeps torch's memory and threads out of the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sentiflow.orchestration.pod import TRAIN_ENTRYPOINT, train_arguments


class LocalTrainingError(RuntimeError):
    """The training process exited non-zero; the message carries its last output lines."""


def run_local_training(
    manifest_uri: str,
    family: str,
    params_json: str,
    *,
    env: Mapping[str, str],
    timeout_s: float,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train in a child process and return its result JSON (run_id, model_version, model_uri, metrics)."""
    with tempfile.TemporaryDirectory(prefix="sentiflow-train-") as tmp:
        output = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            *TRAIN_ENTRYPOINT[1:],
            *train_arguments(manifest_uri, family, params_json),
            "--output-json",
            str(output),
        ]
        child_env = {**os.environ, **env, "SENTIFLOW_TRAIN_XCOM_DIR": str(Path(tmp) / "no-xcom")}
        tail: list[str] = []
        with subprocess.Popen(
            argv, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc:
            timer = threading.Timer(timeout_s, proc.kill)
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.rstrip()
                    log(line)
                    tail = [*tail[-29:], line]
                code = proc.wait()
            except BaseException:  # Airflow's task timeout or a kill: never leave the trainer running
                proc.kill()
                raise
            finally:
                timed_out = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
                timer.cancel()
        if timed_out:
            raise LocalTrainingError(f"training ({family}) was killed after the {timeout_s:.0f}s timeout")
        if code != 0:
            raise LocalTrainingError(
                f"training ({family}) exited with code {code}:\n" + "\n".join(tail[-10:])
            )
        if not output.exists():
            raise LocalTrainingError(f"training ({family}) exited 0 but wrote no result JSON")
        return json.loads(output.read_text())
