"""The trigger form of the DAGs: every parameter with its type, description and default.

Every section is generated from the typed model of its group (``model_form``), so a field's bounds and default
are the model's: ``DatasetParams``/``FeedbackParams``/``PipelineTraining``/``SweepTraining``/
``SelectionParams`` and the manual release's ``ReleaseRequest``/``ReleasePolicy``/``CheckSeed``
(``orchestration.params``), each model family's ``form`` (``families.catalogue``) and ``CheckParams``.
``GROUPS`` says which groups each DAG offers; ``validate_params`` validates a trigger into exactly those.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param
from airflow.sdk.serde import allow_class
from pydantic import BaseModel

from sentiflow.families.catalogue import families
from sentiflow.families.transformer.params import TrainExtra, TrainParams
from sentiflow.orchestration.model_form import form_params
from sentiflow.orchestration.params import (
    CheckSeed,
    DatasetParams,
    FeedbackParams,
    PipelineTraining,
    ReleasePolicy,
    ReleaseRequest,
    SelectionParams,
    SweepTraining,
)
from sentiflow.release.check_plan import CheckParams

DATA = "Dataset"
TRAIN = "Training hyperparameters"
SELECT = "Selection and promotion gate"
CHECK = "Inference check"
REQUEST = "Release request"

PIPELINE, SWEEP, RELEASE = "pipeline", "sweep", "release"

#: Each DAG's parameter groups in form order: (model, form section).
GROUPS: dict[str, list[tuple[type[BaseModel], str]]] = {
    PIPELINE: [
        (DatasetParams, DATA),
        (FeedbackParams, DATA),
        # every family's fields (``ModelFamily.form``), the GPU family's first
        *((form, TRAIN) for e in sorted(families().values(), key=lambda e: not e.gpu) for form in e.form),
        (PipelineTraining, TRAIN),
        (SelectionParams, SELECT),
        (CheckParams, CHECK),
    ],
    SWEEP: [
        (DatasetParams, DATA),
        (TrainParams, TRAIN),
        (TrainExtra, TRAIN),
        (SweepTraining, TRAIN),
        (SelectionParams, SELECT),
        (CheckParams, CHECK),
    ],
    RELEASE: [
        (ReleaseRequest, REQUEST),
        (ReleasePolicy, SELECT),
        (CheckParams, CHECK),
        (CheckSeed, CHECK),
    ],
}

# Each group reaches its tasks as its model: Airflow's serde round-trips a pydantic model through XCom when
# its class may be imported, and every process that runs a task parses a DAG, hence imports this module.
for _model in {model for groups in GROUPS.values() for model, _section in groups}:
    allow_class(_model)


def dag_form(dag: str) -> dict[str, Param]:
    """The trigger form of ``dag`` (``PIPELINE``, ``SWEEP`` or ``RELEASE``): its groups' fields, in order."""
    return form_params(*GROUPS[dag])


def unknown_params(conf: dict[str, Any] | None, declared: Any) -> list[str]:
    """Keys of a trigger's conf that the DAG does not declare (Airflow accepts them silently: a typo such as
    ``learnin_rate`` would otherwise train with the default)."""
    return sorted(set(conf or {}) - set(declared))
