"""The trigger form of the DAGs: every parameter with its type, description and default.

One definition for both DAGs, so the sweep offers exactly the pipeline's dataset, selection and check
parameters. The training hyperparameters are generated from ``TrainParams`` (``model_form``), so their
bounds and defaults are the model's. Defaults of dataset and model come from ``PipelineDefaults``
(``SENTIFLOW_DEFAULT_*``), which is how offline machines point the product at local copies.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from sentiflow import names
from sentiflow.config import PipelineDefaults
from sentiflow.pipeline.checks import DEFAULT_CHECK_CASES
from sentiflow.pipeline.model_form import params_from_model
from sentiflow.pipeline.settings import PipelineSettings
from sentiflow.train.params import TrainParams

SELECTION_METRICS = [
    names.BEST_VAL_F1,
    names.VAL_F1_WEIGHTED,
    names.VAL_ACCURACY,
    names.VAL_AUC,
    names.VAL_F1,
]

_DATA = "Dataset"
_TRAIN = "Training hyperparameters"
_SELECT = "Selection and promotion gate"
_CHECK = "Inference check"


def _opt_int(description: str, title: str, section: str, minimum: int = 1) -> Param:
    return Param(
        None, description=description, type=["null", "integer"], minimum=minimum, title=title, section=section
    )


def dataset_params(defaults: PipelineDefaults | None = None) -> dict[str, Param]:
    defaults = defaults or PipelineDefaults()
    return {
        "dataset": Param(
            defaults.dataset,
            type="string",
            minLength=1,
            title="Dataset",
            section=_DATA,
            description="Hugging Face dataset name, a local folder/file, or an s3:// URI "
            "(parquet/CSV with train/test files).",
        ),
        "dataset_config": Param(
            None,
            type=["null", "string"],
            title="Dataset config",
            section=_DATA,
            description="Hub dataset configuration (subset) name, if it has several.",
        ),
        "text_column": Param(
            None,
            type=["null", "string"],
            title="Text column",
            section=_DATA,
            description="Column holding the text; empty = detect it.",
        ),
        "label_column": Param(
            None,
            type=["null", "string"],
            title="Label column",
            section=_DATA,
            description="Column holding the label; empty = detect it.",
        ),
        "sample_size": _opt_int(
            "Stratified sample of the train split (rows); empty = all.", "Train sample", _DATA
        ),
        "eval_sample_size": _opt_int(
            "Stratified sample of validation and test (rows each); empty = all.", "Eval sample", _DATA
        ),
    }


def training_params(pipeline: PipelineSettings | None = None) -> dict[str, Param]:
    """Every ``TrainParams`` field, generated from its JSON schema, then the DAG's own training switches."""
    pipeline = pipeline or PipelineSettings()
    return {
        **params_from_model(TrainParams, _TRAIN),
        "train_extra": Param(
            {},
            type="object",
            title="Extra training parameters",
            section=_TRAIN,
            description='TrainParams fields as one JSON object, e.g. {"num_hidden_layers": 2, '
            '"bf16": "auto"}; they win over the fields above, and unknown names fail the run.',
        ),
        "train_backend": Param(
            pipeline.train_backend,
            enum=["kubernetes", "local"],
            title="Training backend",
            section=_TRAIN,
            description="kubernetes: a GPU pod (KubernetesPodOperator); "
            "local: the same entrypoint on the Airflow worker. Default: SENTIFLOW_PIPELINE_TRAIN_BACKEND.",
        ),
    }


def selection_params() -> dict[str, Param]:
    return {
        "selection_metric": Param(
            names.BEST_VAL_F1,
            type="string",
            pattern=r"\S",  # not empty, not only blanks
            examples=SELECTION_METRICS,
            title="Selection metric",
            section=_SELECT,
            description="Metric that picks the best version (any logged metric; losses "
            "and times are minimised).",
        ),
        "selection_scope": Param(
            "this_run",
            enum=["this_run", "all_versions"],
            title="Selection scope",
            section=_SELECT,
            description="Choose among this run's versions or all versions of the registered model.",
        ),
        "min_improvement": Param(
            0.0,
            type="number",
            minimum=0,
            title="Minimum improvement",
            section=_SELECT,
            description="Promote only if better than the champion by at least this (in the metric's units).",
        ),
        "min_metric_value": Param(
            None,
            type=["null", "number"],
            title="Minimum metric value",
            section=_SELECT,
            description="Promote only if the metric reaches this (a ceiling for "
            "lower-is-better metrics); empty = no floor.",
        ),
        "force_promote": Param(
            False,
            type="boolean",
            title="Force promotion",
            section=_SELECT,
            description="Promote the selected version even if it does not beat the champion (it must "
            "still reach the minimum metric value); the inference check and its rollback still apply.",
        ),
    }


def check_params() -> dict[str, Param]:
    return {
        "check_texts": Param(
            DEFAULT_CHECK_CASES,
            type="array",
            title="Check texts",
            section=_CHECK,
            items={"type": "object", "required": ["text", "label"]},
            description='Texts with their expected label ({"text", "label"}) sent to the deployed model.',
        ),
        "check_csv_uri": Param(
            None,
            type=["null", "string"],
            title="Check CSV",
            section=_CHECK,
            description="s3:// or local CSV with text,label columns; replaces the texts.",
        ),
        "check_min_accuracy": Param(
            0.8,
            type="number",
            minimum=0,
            maximum=1,
            title="Required accuracy",
            section=_CHECK,
            description="Below this the release rolls back and the run fails.",
        ),
    }


def pipeline_params() -> dict[str, Any]:
    pipeline = PipelineSettings()
    return {
        **dataset_params(),
        "use_feedback": Param(
            pipeline.use_feedback,
            type="boolean",
            title="Train with user feedback",
            section=_DATA,
            description="Merge the model server's labelled feedback since the last export into the "
            "training split (never validation/test). On by default, so the weekly retrain uses it; "
            "the run fails if the server cannot be reached (turn this off to train without it).",
        ),
        **training_params(pipeline=pipeline),
        "run_baseline": Param(
            True,
            type="boolean",
            title="Train the TF-IDF baseline",
            section=_TRAIN,
            description="Also train TF-IDF + logistic regression in parallel; selection "
            "compares both families.",
        ),
        "train_transformer": Param(
            True,
            type="boolean",
            title="Train the transformer",
            section=_TRAIN,
            description="Fine-tune the transformer (pod or local). Turn off with the baseline on for a "
            "quick baseline-only release.",
        ),
        "baseline_params": Param(
            {},
            type="object",
            title="Baseline parameters",
            section=_TRAIN,
            description='BaselineParams fields, e.g. {"C": 4.0, "ngram_max": 2}.',
        ),
        **selection_params(),
        **check_params(),
    }


def sweep_params() -> dict[str, Any]:
    return {
        **dataset_params(),
        **training_params(),
        "grid": Param(
            {names.LEARNING_RATE: [3e-5, 5e-5], names.NUM_TRAIN_EPOCHS: [1, 2]},
            type="object",
            title="Grid",
            section=_TRAIN,
            description="Hyperparameter name → list of values; one "
            "MLflow run and registry version per combination.",
        ),
        **selection_params(),
        **check_params(),
    }


def unknown_params(conf: dict[str, Any], declared: Any) -> list[str]:
    """Keys of a trigger's conf that the DAG does not declare (Airflow accepts them silently: a typo such as
    ``learnin_rate`` would otherwise train with the default)."""
    return sorted(set(conf or {}) - set(declared))
