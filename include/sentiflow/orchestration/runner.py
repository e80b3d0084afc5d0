"""Run a DAG once, in this process, with ``dag.test()``: what the e2e tests and
``sentiflow.localstack.demo`` use.

The caller sets the Airflow environment first (``sentiflow.localstack.stack.client_env``), before anything
imports Airflow, and migrates the metadata DB (``localstack.airflow_init``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def run_dag(dag_id: str, conf: dict[str, Any], dags_folder: str | Path | None = None) -> dict[str, Any]:
    """Run ``dag_id`` with ``conf``; return the run state, each task's state (``mapped``: a mapped task's
    state per map index), XCom value (a mapped task's: a list in map-index order) and rendered template
    fields (what a task was handed, e.g. the training pod's arguments)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(dags_folder) if dags_folder else None)
    if dag_id not in bag.dags:
        raise LookupError(f"no DAG {dag_id!r}; import errors: {bag.import_errors}")
    run = bag.dags[dag_id].test(run_conf=conf)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id).all()
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis}
        mapped: dict[str, list[str]] = {}
        for ti in sorted((ti for ti in tis if ti.map_index >= 0), key=lambda ti: ti.map_index):
            mapped.setdefault(ti.task_id, []).append(str(getattr(ti.state, "value", ti.state)))
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id).all()
        rows.sort(key=lambda row: row.map_index)
        xcoms: dict[str, Any] = {}
        for row in rows:
            key = row.task_id if row.key == "return_value" else f"{row.task_id}.{row.key}"
            value = XComModel.deserialize_value(row)
            if row.map_index >= 0:
                xcoms.setdefault(key, []).append(value)
            else:
                xcoms[key] = value
        fields = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run.run_id).all()
        rendered = {f.task_id: f.rendered_fields for f in fields if f.map_index < 0}
    return {
        "run_id": run.run_id,
        "state": str(getattr(run.state, "value", run.state)),
        "tasks": states,
        "mapped": mapped,
        "xcom": xcoms,
        "rendered": rendered,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m sentiflow.orchestration.runner DAG_ID CONF_JSON`` → one JSON line (prefixed ``RESULT``)."""
    args = argv if argv is not None else sys.argv[1:]
    result = run_dag(args[0], json.loads(args[1]) if len(args) > 1 else {})
    print("RESULT" + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
