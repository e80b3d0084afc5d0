"""Run the training entrypoint (``python -m sentiflow.train``) as a child process of the Airflow worker.

The same command the GPU pod runs, with the same arguments; settings travel as environment variables
built from the Airflow connections. A child process keeps torch's memory and threads out of the worker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from sentiflow.orchestration.pod import TRAIN_ENTRYPOINT

log = logging.getLogger(__name__)


def train_locally(
    manifest_uri: str,
    family_params: Mapping[str, Any],
    family: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Train ``family`` with its validated params (a dict) in a child process; its result JSON (run_id,
    model_version, model_uri, metrics). The body of each family's local training task.

    ``env`` and ``timeout_s`` default to the Airflow connections' settings and the pipeline's timeout, read
    in the task. A failed run changed nothing, so it fails the task without a retry.
    """
    if env is None or timeout_s is None:
        from sentiflow.orchestration.connections import settings_env
        from sentiflow.orchestration.settings import PipelineSettings
        from sentiflow.orchestration.task_context import mlflow_settings, s3_settings

        pipeline = PipelineSettings()
        env = settings_env(s3_settings(pipeline), mlflow_settings(pipeline)) if env is None else env
        timeout_s = pipeline.local_train_timeout_s if timeout_s is None else timeout_s
    with tempfile.TemporaryDirectory(prefix="sentiflow-train-") as tmp:
        output = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            *TRAIN_ENTRYPOINT[1:],
            *("--manifest-uri", manifest_uri, "--family", family),
            *("--params-json", json.dumps(family_params), "--output-json", str(output)),
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
                    log.info("%s", line)
                    tail = [*tail[-29:], line]
                code = proc.wait()
            except BaseException:  # Airflow's task timeout or a kill: never leave the trainer running
                proc.kill()
                raise
            finally:
                timed_out = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
                timer.cancel()
        if timed_out:
            raise AirflowFailException(f"training ({family}) was killed after the {timeout_s:.0f}s timeout")
        if code != 0:
            raise AirflowFailException(
                f"training ({family}) exited with code {code}:\n" + "\n".join(tail[-10:])
            )
        if not output.exists():
            raise AirflowFailException(f"training ({family}) exited 0 but wrote no result JSON")
        result: dict[str, Any] = json.loads(output.read_text())
    log.info("run %s registered version %s", result.get("run_id"), result.get("model_version"))
    return result
