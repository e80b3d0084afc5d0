"""``sentiment_sweep``: a hyperparameter grid, one MLflow run and registry version per point, then the
pipeline's own select → promote → deploy → check tail (shared code from ``sentiflow.orchestration.*_tasks``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from sentiflow.families.catalogue import family
from sentiflow.names import FAMILY_TRANSFORMER
from sentiflow.orchestration import data_tasks, release_tasks, training_tasks
from sentiflow.orchestration.dag_params import SWEEP, dag_form
from sentiflow.orchestration.params import SweepTraining
from sentiflow.orchestration.training_tasks import DATASET, SEED, TRAINING

DOC = """
### Sentiment hyperparameter sweep

Collects and cleans the dataset once, then trains one model per point of the `grid` param (e.g.
`{"learning_rate": [3e-5, 5e-5], "num_train_epochs": [1, 2]}` → 4 runs) as mapped tasks — GPU pods or
local — and hands all resulting versions to the same **select_best** gate, **promote**, **deploy** and
**inference_check** as `sentiment_pipeline`. Manual trigger only.
"""


@dag(
    dag_id="sentiment_sweep",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sentiflow", "ml", "training", "sweep"],
    doc_md=DOC,
    params=dag_form(SWEEP),
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    dagrun_timeout=timedelta(hours=24),
)
def sentiment_sweep() -> None:
    # task outputs are XComArgs, typed Any while wired (sentiflow.orchestration.task_context)
    params: Any = training_tasks.validate_params(SWEEP)  # each parameter group, typed (its model)
    raw_uri = data_tasks.collect_task(params[DATASET], params[SEED])
    clean_uri = data_tasks.clean_mapped(raw_uri)  # one mapped task per part, then the manifest

    @task(task_id="plan_grid", retries=0)
    def plan_grid(base: dict[str, Any], training: SweepTraining) -> list[dict[str, Any]]:
        """The grid's points as validated training params (a bad value fails here, before training)."""
        return training_tasks.grid_points(base, training.grid)

    points: Any = plan_grid(params[FAMILY_TRANSFORMER], params[TRAINING])

    @task.branch(task_id="choose_training")
    def choose_training(training: SweepTraining) -> str:
        return "pod_arguments" if training.train_backend == "kubernetes" else "train_grid_local"

    @task(task_id="pod_arguments", retries=0)
    def pod_arguments(manifest_uri: str, points: list[dict[str, Any]]) -> list[list[str]]:
        import json

        from sentiflow.orchestration.pod import train_arguments

        return [train_arguments(manifest_uri, FAMILY_TRANSFORMER, json.dumps(p)) for p in points]

    train_grid_local = training_tasks.train_family(family(FAMILY_TRANSFORMER)).override(
        task_id="train_grid_local"
    )
    branch = choose_training(params[TRAINING])
    [clean_uri, points] >> branch
    local = train_grid_local.partial(manifest_uri=clean_uri, family=FAMILY_TRANSFORMER).expand(
        family_params=points
    )
    arguments = pod_arguments(clean_uri, points)
    pods = training_tasks.trainer_pods_mapped("train_grid_kubernetes", arguments)
    branch >> [local, arguments]
    release_tasks.release_tail(
        [local, pods.output], params
    )  # both mapped: each resolves to its list of results


sentiment_sweep()
