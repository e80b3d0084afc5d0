"""``sentiment_release``: release one named, already registered version through the pipeline's release tasks.

Wiring only: the task bodies live in ``sentiflow.orchestration.release_request`` (validate, look the version
up, gate it) and ``release_tasks`` (promote → deploy → inference_check, shared with both pipeline DAGs).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag

from sentiflow.names import RELEASE_DAG
from sentiflow.orchestration import release_request, release_tasks
from sentiflow.orchestration.dag_params import RELEASE, dag_form
from sentiflow.orchestration.release_request import REQUEST
from sentiflow.orchestration.training_tasks import SELECTION

DOC = """
### Sentiment release

Releases one version that is already in the registry (trained by `sentiment_pipeline` or registered by
hand): a user's deploy request from the model server's `POST /deploy`, the web page or this trigger form.
The run goes through the pipeline's own release tasks, so a manual release meets the same gate and the same
checks as a weekly one:

1. **validate_params**: `version` (its number) and `requested_by` are required; `force_promote` needs a
   written `force_reason`.
2. **registered_version** looks the version up in the registered model (the run fails if there is none).
3. **select_best** gates it against the `champion` on the same rows, as the pipeline does. If the gate
   refuses (another label set, not better), **the run fails with the gate's reason and nothing moves**;
   `force_promote` with a `force_reason` overrides the comparison (not the floor, `min_metric_value`). A
   version that already is the champion ends in **keep_champion**: nothing to do.
4. **promote** moves alias `champion` (old one → `previous`) and records `release_requested_by`,
   `release_force_reason` (when forced) and `release_dag_run_id` on the version; **deploy** waits until every
   model-server replica serves it; **inference_check** sends known texts. Any failure rolls back to the
   aliases from before.

Rolling back to an earlier champion is a release of that version. Trigger from the UI ("Trigger" → form) or
the REST API: `POST /api/v2/dags/sentiment_release/dagRuns` with
`{"conf": {"version": "4", "requested_by": "alice"}}`. See `docs/pipeline.md`.
"""


@dag(
    dag_id=RELEASE_DAG,
    schedule=None,  # triggered only: unpaused, it runs exactly the runs somebody asks for
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=1,  # one release at a time: a second waits for the aliases the first leaves
    tags=["sentiflow", "ml", "deployment", "release"],
    doc_md=DOC,
    params=dag_form(RELEASE),
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    dagrun_timeout=timedelta(hours=2),
)
def sentiment_release() -> None:
    # task outputs are XComArgs, typed Any while wired (sentiflow.orchestration.task_context)
    params: Any = release_request.validate_release()  # the request, the gate's policy, the check: typed
    registered: Any = release_request.registered_version(params[REQUEST])
    selected = release_request.gate_release(registered, params[SELECTION], params[REQUEST])
    release_tasks.release_steps(selected, params)


sentiment_release()
