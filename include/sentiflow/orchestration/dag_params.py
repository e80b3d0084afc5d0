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
from sentiflow.orchestration.model_form import params_from_model
from sentiflow.orchestration.settings import PipelineSettings
from sentiflow.release.checks import DEFAULT_ACCURACY_MARGIN, DEFAULT_CASES_PER_CLASS, DEFAULT_CHECK_CASES
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
        "label_names": Param(
            None,
            type=["null", "array", "object"],
            title="Label names",
            section=_DATA,
            description="Names of integer label ids: a list in ascending id order (ids -1,0,1 → "
            '["negative", "neutral", "positive"]) or an object {"-1": "negative", ...}; empty = from '
            "the source's schema, else sentiment names by count.",
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
        "confidence": Param(
            0.95,
            type="number",
            minimum=0,
            exclusiveMaximum=1,
            title="Confidence",
            section=_SELECT,
            description="Champion and challenger are scored on this run's validation rows; promote only "
            "when this confidence interval of challenger − champion (paired bootstrap; McNemar for "
            "accuracy) clears the minimum improvement. 0 = compare the point values.",
        ),
        "registered_model_name": Param(
            None,
            type=["null", "string"],
            pattern="^[^'\"]*$",  # MLflow search filters quote the name
            maxLength=256,
            title="Registered model",
            section=_SELECT,
            description="MLflow registered model this run trains into and promotes in (one Airflow, "
            "several models, e.g. one per label set); empty = SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME. "
            "Only that default model is deployed to the model server.",
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
        "check_cases_per_class": Param(
            DEFAULT_CASES_PER_CLASS,
            type="integer",
            minimum=0,
            title="Check cases per class",
            section=_CHECK,
            description="Labelled texts per class drawn (seeded) from the deployed model's test snapshot "
            "and sent to the server; 0 = only the texts below.",
        ),
        "check_texts": Param(
            [],
            type="array",
            title="Check texts",
            section=_CHECK,
            items={"type": "object", "required": ["text", "label"]},
            description='Your own texts with their expected label ({"text", "label"}), sent as well.',
            examples=[DEFAULT_CHECK_CASES],
        ),
        "check_csv_uri": Param(
            None,
            type=["null", "string"],
            title="Check CSV",
            section=_CHECK,
            description="s3:// or local CSV with text,label columns; replaces the texts above.",
        ),
        "check_min_accuracy": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Required accuracy",
            section=_CHECK,
            description="Below this the release rolls back and the run fails; empty = the model's "
            "offline test accuracy minus the margin below.",
        ),
        "check_accuracy_margin": Param(
            DEFAULT_ACCURACY_MARGIN,
            type="number",
            minimum=0,
            maximum=1,
            title="Accuracy margin",
            section=_CHECK,
            description="With no required accuracy: how far below its test accuracy the model may score "
            "on the check cases (few cases are noisy).",
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
        "feedback_max_fraction": Param(
            pipeline.feedback_max_fraction,
            type="number",
            minimum=0,
            title="Most feedback per training row",
            section=_DATA,
            description="At most this many feedback rows are added per row of the training split (0.1 = "
            "10%; the most recent win). Only feedback that cites a signed prediction is used.",
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
