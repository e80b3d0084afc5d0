"""``sentiment_pipeline``: collect → clean → train (pod or local) + baseline → select → deploy → check.

Wiring only: every task body lives in ``sentiflow.orchestration.data_tasks``, ``training_tasks`` and
``release_tasks`` (shared with ``sentiment_sweep``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from sentiflow.families.catalogue import families
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.orchestration import data_tasks, release_tasks, training_tasks
from sentiflow.orchestration.dag_params import PIPELINE, dag_form
from sentiflow.orchestration.params import PipelineTraining
from sentiflow.orchestration.training_tasks import DATASET, FAMILIES, FEEDBACK, SEED, TRAINING

#: The GPU family's training pod (``train_backend=kubernetes``).
POD = "train_kubernetes"

DOC = """
### Sentiment pipeline

Keeps the sentiment classifier trained, tracked, chosen and served.

1. **collect** the dataset (Hub name, path or `s3://` URI) into a raw snapshot in S3, **clean** it;
   **training_data** merges the model server's labelled user feedback into the training split
   (`use_feedback`, on for the weekly run; validation/test untouched). **drift_report** compares recent
   production inputs with that snapshot (report in S3 and MLflow; never gates the release).
2. **train** every model family switched on: the transformer on a GPU pod (`train_backend=kubernetes`) or
   on the worker (`local`), and the TF-IDF **baseline** in parallel (`run_baseline`). Each run is an MLflow
   run and a registry version;
   **feedback_lineage** records on each run the feedback rows it used and their snapshot URI.
3. **select_best** picks the best version by `selection_metric` and gates it: it must beat the
   `champion` by `min_improvement`, reach `min_metric_value` and fail no more behavioural cases than the
   champion (`behaviour_check`; `force_promote` skips the comparisons); otherwise **keep_champion** says why.
4. **promote** moves alias `champion` (old one → `previous`), **deploy** hot-swaps it into the model
   server, **inference_check** sends known texts and rolls back to `previous` if accuracy is too low.

Runs weekly with the defaults; trigger with your own parameters from the UI ("Trigger" → form) or the
REST API (`POST /api/v2/dags/sentiment_pipeline/dagRuns` with `{"conf": {...}}`). See `docs/pipeline.md`.
"""


@dag(
    dag_id="sentiment_pipeline",
    schedule="@weekly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sentiflow", "ml", "training", "deployment"],
    doc_md=DOC,
    params=dag_form(PIPELINE),
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    dagrun_timeout=timedelta(hours=12),
)
def sentiment_pipeline() -> None:
    # task outputs are XComArgs, typed Any while wired (sentiflow.orchestration.task_context)
    params: Any = training_tasks.validate_params(PIPELINE)  # each parameter group, typed (its model)
    raw_uri = data_tasks.collect_task(params[DATASET], params[SEED])
    clean_uri = data_tasks.clean_mapped(raw_uri)  # one mapped task per part, then the manifest
    # clean, or clean + feedback (use_feedback)
    data_uri: Any = data_tasks.training_data_task(clean_uri, params[FEEDBACK])

    @task.branch(task_id="choose_training")
    def choose_training(on: list[str], training: PipelineTraining) -> list[str]:
        """Each family switched on: its local task, or the pod for the GPU family with ``kubernetes``."""
        from sentiflow.families.catalogue import family

        pod = training.train_backend == "kubernetes"
        return [POD if pod and family(name).gpu else family(name).task_id for name in on]

    branch = choose_training(params[FAMILIES], params[TRAINING])
    data_uri >> branch
    # Tasks wired by their outputs (XComArgs): each reads what its upstream returned, and Airflow derives
    # the dependencies from the arguments. A task the branch skipped hands on None.
    training = [
        training_tasks.trainer_pod(POD, data_uri, params[FAMILY_TRANSFORMER]).output,
    ] + [  # every family of the catalogue: the transformer, the TF-IDF baseline, and any family added there
        training_tasks.train_family(entry)(data_uri, params[entry.name], family=entry.name)
        for entry in families().values()
    ]
    branch >> [result.operator for result in training]
    lineage = data_tasks.feedback_lineage(data_uri, training)
    selected = release_tasks.release_tail(training, params)
    lineage >> selected
    data_tasks.drift_report_task(data_uri)  # informs only: nothing in the release waits for it


sentiment_pipeline()
