"""The names every component agrees on (``docs/architecture.md``, "Names"), defined once.

Metric and parameter names are what selection, the model server, the web page and the DAG read from MLflow;
renaming one here renames it everywhere.
"""

from __future__ import annotations

# --- DAGs and the manual release's request ---------------------------------------------------------------
#: The DAG that releases one named, already registered version (gate → promote → deploy → check): a
#: user's deploy request from the model server's ``POST /deploy``, the web page or Airflow's trigger form.
RELEASE_DAG = "sentiment_release"
#: Its trigger conf's keys: the version, who asked, and an override of the gate with its written reason.
RELEASE_VERSION = "version"
RELEASE_REQUESTED_BY = "requested_by"
FORCE_PROMOTE = "force_promote"
FORCE_REASON = "force_reason"
#: The gate's task in both DAGs and the XCom key of its decision (``reason``: why it promotes or refuses),
#: which the model server reads back to answer a deploy request with the gate's reason.
GATE_TASK = "select_best"
GATE_DECISION_KEY = "decision"

# --- hyperparameters (Hugging Face names, plus train_subset_size) -------------------------------------
NUM_TRAIN_EPOCHS = "num_train_epochs"
PER_DEVICE_TRAIN_BATCH_SIZE = "per_device_train_batch_size"
PER_DEVICE_EVAL_BATCH_SIZE = "per_device_eval_batch_size"
LEARNING_RATE = "learning_rate"
WEIGHT_DECAY = "weight_decay"
WARMUP_RATIO = "warmup_ratio"
MAX_LENGTH = "max_length"
SEED = "seed"
#: The default seed of every sampling, split and initialisation: defined once, here.
DEFAULT_SEED = 42
TRAIN_SUBSET_SIZE = "train_subset_size"
EVAL_SUBSET_SIZE = "eval_subset_size"
EARLY_STOPPING_PATIENCE = "early_stopping_patience"
TRUNCATION = "truncation"
MODEL_NAME = "model_name"

# --- metrics --------------------------------------------------------------------------------------
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
VAL_F1 = "val_f1"  # macro F1
VAL_F1_WEIGHTED = "val_f1_weighted"
VAL_PRECISION = "val_precision"
VAL_RECALL = "val_recall"
VAL_AUC = "val_auc"
BEST_EPOCH = "best_epoch"
BEST_VAL_F1 = "best_val_f1"
FIT_TIME_S = "fit_time_s"
PREDICT_TIME_MS_PER_1K = "predict_time_ms_per_1k"

#: The per-split classification metrics; ``val_*`` per epoch, ``test_*`` once at the end.
SPLIT_METRIC_SUFFIXES = ("loss", "accuracy", "f1", "f1_weighted", "precision", "recall", "auc")


def split_metric(split: str, suffix: str) -> str:
    """``split_metric("test", "f1") == "test_f1"``; split is ``val`` or ``test``."""
    if suffix not in SPLIT_METRIC_SUFFIXES:
        raise ValueError(f"unknown metric suffix {suffix!r}; known: {SPLIT_METRIC_SUFFIXES}")
    return f"{split}_{suffix}"


VAL_METRICS = tuple(split_metric("val", s) for s in SPLIT_METRIC_SUFFIXES)
TEST_METRICS = tuple(split_metric("test", s) for s in SPLIT_METRIC_SUFFIXES)
SUMMARY_METRICS = (BEST_EPOCH, BEST_VAL_F1, FIT_TIME_S, PREDICT_TIME_MS_PER_1K)

#: Metrics where a smaller value is better; selection flips its comparison for these.
LOWER_IS_BETTER = frozenset({TRAIN_LOSS, VAL_LOSS, "test_loss", FIT_TIME_S, PREDICT_TIME_MS_PER_1K})


def lower_is_better(metric: str) -> bool:
    """Losses and times are minimised; everything else (accuracy, F1, AUC...) is maximised."""
    return metric in LOWER_IS_BETTER


# --- tags -------------------------------------------------------------------------------------------
TAG_MODEL_FAMILY = "model_family"  # "transformer" or "tfidf-logreg"
TAG_DATASET = "dataset"
TAG_DATASET_MANIFEST = "dataset_manifest_uri"
TAG_GIT_COMMIT = "git_commit"
TAG_BASE_MODEL = "base_model"
FAMILY_TRANSFORMER = "transformer"
FAMILY_TFIDF = "tfidf-logreg"
#: Run tag of a transformer's training run: the ONNX runtimes whose files its logged model ships
#: (comma-separated, e.g. ``onnx-int8``), or ``none`` when their build failed at log time (replicas build).
TAG_ONNX_SHIPPED = "onnx_shipped"

# --- snapshot layout --------------------------------------------------------------------------------
SPLITS = ("train", "validation", "test")
MANIFEST_FILE = "manifest.json"
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"

# --- training extras ------------------------------------------------------------------------
DEVICE = "device"
BF16 = "bf16"
NUM_HIDDEN_LAYERS = "num_hidden_layers"
ATTN_IMPLEMENTATION = "attn_implementation"
ATTENTION_DROPOUT = "attention_dropout"
HIDDEN_DROPOUT = "hidden_dropout"
TFIDF_C = "C"
TFIDF_NGRAM_MAX = "ngram_max"
TFIDF_MAX_FEATURES = "max_features"
TFIDF_MAX_TRAIN_ROWS = "max_train_rows"
TAG_ERROR = "error"
#: Version tag: why a release of this version was rolled back. Such versions are never candidates again
#: unless a user names them (``sentiflow.registry``).
TAG_ROLLED_BACK = "rolled_back_reason"
#: Registered-model tag holding the aliases before a promotion in progress (JSON), so a retried or failed
#: promotion restores exactly those (``sentiflow.release.flow``).
TAG_RELEASE_PRIOR_ALIASES = "release_prior_aliases"
#: Run tag on the candidate's MLflow run: why its release failed.
TAG_RELEASE_FAILURE = "release_failure_reason"
#: Version tags: the pipeline's signed statement that approves (or revokes) serving this version, and its
#: signature (``sentiflow.security.approval``); a replica serves only the newest verified approval.
TAG_APPROVAL = "sentiflow.security.approval"
TAG_APPROVAL_SIGNATURE = "sentiflow.approval_signature"
#: Version tags of a manual release (``sentiment_release``), written when it promotes the version: who asked,
#: why the gate was overridden (only when forced; a later unforced release removes it) and the DAG run.
TAG_RELEASE_REQUESTED_BY = "release_requested_by"
TAG_RELEASE_FORCE_REASON = "release_force_reason"
TAG_RELEASE_DAG_RUN = "release_dag_run_id"

# --- feedback loop and drift ------------------------------------------------------------------
FEEDBACK_ROWS_USED = "feedback_rows_used"  # metric on the training run
FEEDBACK_SNAPSHOT_URI = "feedback_snapshot_uri"  # param/tag on the training run
FEEDBACK_ROWS_UNLABELLED = "feedback_rows_unlabelled"
#: Rows that cite a prediction the server signed (only those are trained on) and rows cut by the cap.
FEEDBACK_ROWS_VERIFIED = "feedback_rows_verified"
FEEDBACK_ROWS_OVER_CAP = "feedback_rows_over_cap"
#: Feedback rows no reviewer accepted or corrected: never trained on.
FEEDBACK_ROWS_UNREVIEWED = "feedback_rows_unreviewed"
#: ``{reviewer: rows}`` of the feedback rows a run added to train (the merged manifest's notes).
FEEDBACK_ROWS_BY_REVIEWER = "feedback_rows_by_reviewer"
DRIFT_PSI_TEXT_LENGTH = "drift_psi_text_length"
DRIFT_PSI_LABEL = "drift_psi_label"
DRIFT_OOV_RATE = "drift_oov_rate"
DRIFT_OOV_RATE_REFERENCE = "drift_oov_rate_reference"
DRIFT_SAMPLE_ROWS = "drift_sample_rows"
DRIFT_REPORT_URI = "drift_report_uri"

# --- champion vs challenger on the same rows --------------------------------------------------
#: Tags on the challenger's MLflow run recording the gate's decision: ``gate.<field>`` for each field of
#: ``sentiflow.gate.judge.Decision``.
TAG_GATE_PREFIX = "gate."

# --- a fed GPU, the weekly preset, multi-GPU ---------------------------------------------------
PRESET = "preset"
GPUS = "gpus"
DATALOADER_NUM_WORKERS = "dataloader_num_workers"
DATALOADER_PIN_MEMORY = "dataloader_pin_memory"
TF32 = "tf32"
TORCH_COMPILE = "torch_compile"
#: Metrics of the fit's throughput and of the GPU sampled through it (NVML); the GPU ones only where one is.
TRAIN_SAMPLES_PER_S = "train_samples_per_s"
EPOCH_TIME_S = "epoch_time_s"
GPU_UTILIZATION_MEAN_PCT = "gpu_utilization_mean_pct"
GPU_MEMORY_USED_PEAK_MIB = "gpu_memory_used_peak_mib"
GPU_COUNT = "gpu_count"
