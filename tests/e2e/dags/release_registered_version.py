"""``release_registered_version``: the pipeline's release tail for a version registered before the run.

Test wiring only (``tests/e2e/test_tampered_release.py``, ``benchmarks/release_trust.py``): the real
``validate_params`` and the real release tasks of both pipeline DAGs (``release_tasks.release_tail``:
select_best → promote → deploy → inference_check, or keep_champion), with one stand-in for the training
tasks that hands over the version named by the ``registered_version`` param, as a training task hands over the
version it registered. So what happens between registration and release (an artifact overwritten in S3) can
be set up by a test, and the release runs exactly as the DAGs run it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from sentiflow.orchestration import release_tasks, training_tasks
from sentiflow.orchestration.dag_params import PIPELINE, dag_form


@dag(
    dag_id="release_registered_version",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        **dag_form(PIPELINE),
        "registered_version": Param("", type="string", description="The registry version to release."),
        "registered_run_id": Param("", type="string", description="The MLflow run that version came from."),
    },
    default_args={"retries": 0},
)
def release_registered_version() -> None:
    params = training_tasks.validate_params(PIPELINE)

    @task(task_id="registered")
    def registered() -> dict[str, Any]:
        """What a training task returns: the version it registered and its run."""
        run_params = get_current_context()["params"]
        return {
            "model_version": str(run_params["registered_version"]),
            "run_id": run_params["registered_run_id"],
        }

    release_tasks.release_tail([registered()], params)


release_registered_version()
