"""Feedback-enriched training data: exported feedback rows → a feedback snapshot and a merged clean snapshot.

Rules, all enforced here so every caller gets them:

* a row flagged ``correct`` has true label = predicted label; a wrong row is labelled only when the user
  gave ``true_label``; rows without a usable label are counted, never trained on;
* feedback texts go through the same cleaning as the dataset, then are deduplicated among themselves
  (the latest judgement of a text wins) and against **every** split of the base snapshot, so a review
  that is in validation or test can never enter training through feedback;
* feedback only ever enters the **train** split; validation and test are the base snapshot's, unchanged,
  so metrics stay comparable with the champion's;
* only **verified** rows are trained on: those that cited a prediction the server signed; an
  export without the ``verified`` column (an older server) counts as unverified;
* only **reviewed** rows are trained on: ``status`` accepted (the user's label) or corrected (the
  reviewer's ``review_label``); pending and rejected rows, and an export without ``status``, never train.
  Each row keeps its reviewer (``reviewed_by``) in the feedback snapshot, and the merged manifest's notes
  count the rows added per reviewer (``feedback_rows_by_reviewer``);
* at most ``max_fraction`` x the base train split's rows are added (the most recent win), so a flood of
  feedback cannot outweigh the dataset; the rest stay in the feedback snapshot, counted.

The base snapshot is streamed (``iter_batches`` in, ``SnapshotWriter`` out): memory is the exported
feedback plus one batch of base rows, whatever the base's size. The export itself (the rows since the last
export, one ``GET /feedback/export``) is held in pandas.

The counts go into the merged manifest's ``notes`` (``feedback_rows_used``, ``feedback_snapshot_uri``, ...)
for the training run to log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sentiflow.data.snapshot import Manifest, SnapshotWriter, iter_batches, read_manifest, write_snapshot
from sentiflow.names import (
    FEEDBACK_ROWS_BY_REVIEWER,
    FEEDBACK_ROWS_OVER_CAP,
    FEEDBACK_ROWS_UNLABELLED,
    FEEDBACK_ROWS_UNREVIEWED,
    FEEDBACK_ROWS_USED,
    FEEDBACK_ROWS_VERIFIED,
    FEEDBACK_SNAPSHOT_URI,
    LABEL_COLUMN,
    SPLITS,
    TEXT_COLUMN,
)
from sentiflow.settings.components import DataSettings
from sentiflow.storage import ObjectStore

if TYPE_CHECKING:
    from mlflow import MlflowClient

REQUIRED_COLUMNS = ("text", "predicted_label", "correct")
OPTIONAL_COLUMNS = (
    "true_label",
    "created_at",
    "model_version",
    "id",
    "verified",
    "status",
    "review_label",
    "reviewed_by",
    "review_seq",
)
#: Review statuses that train (the server's ``serving.store.feedback.TRAINABLE``).
ACCEPTED, CORRECTED = "accepted", "corrected"
FEEDBACK_KIND = "feedback"
MERGED_KIND = "clean-with-feedback"

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class FeedbackDataError(ValueError):
    """Exported feedback cannot be used (missing columns, unreadable ``correct`` values)."""


@dataclass
class LabelledFeedback:
    """Feedback rows with a resolved label id, plus what was left out and why."""

    frame: pd.DataFrame  # text, label, created_at (cleaned, deduplicated among themselves)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackMergeResult:
    feedback_manifest_uri: str
    merged_manifest_uri: str
    notes: dict[str, Any]

    @property
    def rows_used(self) -> int:
        return int(self.notes[FEEDBACK_ROWS_USED])


def _parse_bool(values: pd.Series, column: str = "correct") -> pd.Series:
    """Flags arrive as bool from parquet and as text from CSV; anything else is an error."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(bool)
    text = values.astype(str).str.strip().str.lower()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        examples = sorted(set(values[bad].astype(str)))[:5]
        raise FeedbackDataError(
            f"column {column!r} must be true/false; {int(bad.sum())} rows are not, e.g. {examples}"
        )
    return text.isin(_TRUE)


def _label_ids(labels: pd.Series, label_names: list[str]) -> pd.Series:
    """Label names (or their ids as text) → ids; unknown or missing → NA."""
    lookup: dict[str, int] = {name.lower(): i for i, name in enumerate(label_names)}
    lookup.update({str(i): i for i in range(len(label_names))})

    def one(value: Any) -> Any:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return pd.NA
        return lookup.get(str(value).strip().lower(), pd.NA)

    return labels.map(one).astype("Int64")


def label_feedback(rows: pd.DataFrame, label_names: list[str], *, clean: bool = True) -> LabelledFeedback:
    """Resolve each row's training label and drop what must not be trained on (counted, by reason)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise FeedbackDataError(
            f"feedback export lacks column(s) {missing}; it has {list(rows.columns)} "
            f"(expected {list(REQUIRED_COLUMNS)} and optionally {list(OPTIONAL_COLUMNS)})"
        )
    frame = rows.copy()
    if "true_label" not in frame.columns:
        frame["true_label"] = None
    frame["created_at"] = (
        pd.to_datetime(frame["created_at"], utc=True, errors="coerce")
        if "created_at" in frame.columns
        else pd.NaT
    )
    correct = _parse_bool(frame["correct"])
    verified = (
        _parse_bool(frame["verified"], "verified")
        if "verified" in frame.columns
        else pd.Series(False, index=frame.index)
    )
    status = (
        frame["status"].astype("string").str.strip().str.lower()
        if "status" in frame.columns
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    )
    corrected = (status == CORRECTED).fillna(False).astype(bool)
    reviewed = corrected | (status == ACCEPTED).fillna(False).astype(bool)
    for column in ("review_label", "reviewed_by"):
        if column not in frame.columns:
            frame[column] = None
    predicted = _label_ids(frame["predicted_label"], label_names)
    given = _label_ids(frame["true_label"], label_names)
    has_true_label = frame["true_label"].notna() & (frame["true_label"].astype(str).str.strip() != "")

    # a reviewer's correction wins over what the user said
    label = given.where(~correct, predicted).where(~corrected, _label_ids(frame["review_label"], label_names))
    unlabelled = ~correct & ~has_true_label & ~corrected
    unknown = label.isna() & ~unlabelled
    keep = ~unlabelled & ~unknown & verified & reviewed
    counts = {
        "feedback_rows_total": len(frame),
        FEEDBACK_ROWS_VERIFIED: int(verified.sum()),
        "feedback_rows_unverified": int((~verified).sum()),
        "feedback_rows_reviewed": int(reviewed.sum()),
        FEEDBACK_ROWS_UNREVIEWED: int((~reviewed).sum()),
        "feedback_rows_correct": int(correct.sum()),
        "feedback_rows_wrong": int((~correct).sum()),
        FEEDBACK_ROWS_UNLABELLED: int(unlabelled.sum()),
        "feedback_rows_unknown_label": int(unknown.sum()),
    }

    labelled = pd.DataFrame(
        {
            TEXT_COLUMN: frame.loc[keep, "text"].astype(str),
            LABEL_COLUMN: label[keep].astype("int64"),
            "created_at": frame.loc[keep, "created_at"],
            "reviewed_by": frame.loc[keep, "reviewed_by"].astype("string"),
        }
    )
    if clean:
        from sentiflow.data.clean import clean_text

        labelled[TEXT_COLUMN] = clean_text(labelled[TEXT_COLUMN])
    empty = labelled[TEXT_COLUMN].str.len() == 0
    labelled = labelled[~empty]
    # The latest judgement of a text wins (a user may correct an earlier flag); stable for equal times.
    labelled = labelled.sort_values("created_at", kind="stable", na_position="first")
    duplicated = labelled.duplicated(subset=[TEXT_COLUMN], keep="last")
    labelled = labelled[~duplicated].reset_index(drop=True)
    counts["feedback_rows_empty_after_cleaning"] = int(empty.sum())
    counts["feedback_rows_duplicate_in_feedback"] = int(duplicated.sum())
    counts["feedback_rows_labelled"] = len(labelled)
    return LabelledFeedback(labelled, counts)


def dedupe_against_base(
    feedback: pd.DataFrame, base: Mapping[str, Iterable[pa.Array | pa.ChunkedArray]]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop feedback whose text is already in any base split; count the overlap per split.

    ``base``: per split, its texts as a stream of Arrow arrays (``iter_batches``), each read once: memory is
    the feedback plus one batch of base texts (and the base texts equal to a feedback text), whatever the
    base's size. Exact comparison of the texts (Arrow's ``is_in``), no hashing.
    """
    lookup = pa.array(feedback[TEXT_COLUMN].astype(str).tolist(), type=pa.string())
    overlap: dict[str, int] = {}
    seen = pd.Series(False, index=feedback.index)
    for split, batches in base.items():
        found: set[str] = set()
        for texts in batches:
            if len(lookup):
                values = lookup if lookup.type == texts.type else lookup.cast(texts.type)
                found.update(pc.filter(texts, pc.is_in(texts, value_set=values)).to_pylist())
        hit = feedback[TEXT_COLUMN].isin(found)
        overlap[split] = int((hit & ~seen).sum())
        seen |= hit
    return feedback[~seen].reset_index(drop=True), overlap


def cap_rows(rows: pd.DataFrame, train_rows: int, max_fraction: float | None) -> tuple[pd.DataFrame, int]:
    """At most ``floor(max_fraction * train_rows)`` rows, the most recent kept; and how many were cut."""
    if max_fraction is None:
        return rows, 0
    if max_fraction < 0:
        raise FeedbackDataError(f"feedback_max_fraction must be >= 0, got {max_fraction}")
    cap = int(max_fraction * train_rows)
    if len(rows) <= cap:
        return rows, 0
    ordered = rows.sort_values("created_at", kind="stable", na_position="first")
    kept = ordered.iloc[len(rows) - cap :] if cap else ordered.iloc[:0]
    return kept.reset_index(drop=True), len(rows) - cap


def merge_feedback_into_snapshot(
    feedback_rows: pd.DataFrame,
    base_manifest_uri: str,
    *,
    run_id: str,
    store: ObjectStore | None = None,
    source: dict[str, Any] | None = None,
    clean: bool = True,
    max_fraction: float | None = None,
    settings: DataSettings | None = None,
) -> FeedbackMergeResult:
    """Write the feedback snapshot and the merged training snapshot; return both manifest URIs.

    ``feedback_rows`` is the server's export (``text``, ``predicted_label``, ``correct``, optional
    ``true_label``, ``created_at``, ``model_version``, ``id``). Both snapshots live under the run's own
    folder (``datasets/<run_id>/feedback/`` and ``datasets/<run_id>/clean-with-feedback/``), so a re-run
    replaces its own output and never another run's. ``max_fraction``: at most that many feedback rows per
    base train row are added (the most recent first); ``None`` adds all. ``settings``: batch and part sizes.
    """
    from sentiflow.data.collect import snapshot_prefix

    store = store or ObjectStore()
    settings = settings or DataSettings()
    base: Manifest = read_manifest(store, base_manifest_uri)
    if "train" not in base.splits:
        raise FeedbackDataError(f"base snapshot {base_manifest_uri} has no train split to merge into")

    labelled = label_feedback(feedback_rows, base.label_names, clean=clean)
    export_source = {"type": "feedback_export", **(source or {})}
    if "created_at" in labelled.frame and labelled.frame["created_at"].notna().any():
        export_source["first_created_at"] = labelled.frame["created_at"].min().isoformat()
        export_source["last_created_at"] = labelled.frame["created_at"].max().isoformat()
    feedback_uri = write_snapshot(
        store,
        snapshot_prefix(store, run_id, FEEDBACK_KIND),
        {"train": labelled.frame},
        kind="feedback",
        run_id=run_id,
        source=export_source,
        label_names=base.label_names,
        notes=dict(labelled.counts),
    )

    rows = settings.batch_rows
    base_texts = {  # each base split's texts, batch by batch, read as dedupe_against_base consumes them
        split: (b.column(0) for b in iter_batches(store, base, split, batch_rows=rows, columns=[TEXT_COLUMN]))
        for split in SPLITS
        if split in base.splits
    }
    new_rows, overlap = dedupe_against_base(labelled.frame, base_texts)
    new_rows, over_cap = cap_rows(new_rows, base.splits["train"].rows, max_fraction)
    notes: dict[str, Any] = {
        **labelled.counts,
        "feedback_rows_in_base": overlap,
        FEEDBACK_ROWS_OVER_CAP: over_cap,
        FEEDBACK_ROWS_USED: len(new_rows),
        FEEDBACK_ROWS_BY_REVIEWER: {
            str(k): int(v) for k, v in new_rows["reviewed_by"].fillna("unknown").value_counts().items()
        },
        FEEDBACK_SNAPSHOT_URI: feedback_uri,
        "base_manifest_uri": base_manifest_uri,
    }
    # The base's rows batch by batch, then the feedback rows at the end of train (the same rows and order)
    prefix = snapshot_prefix(store, run_id, MERGED_KIND)
    with SnapshotWriter(store, prefix, label_names=base.label_names, settings=settings) as writer:
        for split in (s for s in SPLITS if s in base.splits):
            writer.split(split)
            for batch in iter_batches(store, base, split, batch_rows=rows):
                writer.write(split, batch)
            if split == "train" and len(new_rows):
                writer.write(split, new_rows[[TEXT_COLUMN, LABEL_COLUMN]])
        merged_uri = writer.finish(
            kind="clean",
            run_id=run_id,
            source={
                "type": "clean+feedback",
                "base": base_manifest_uri,
                "feedback": feedback_uri,
                # the dataset's own name, so the web page and MLflow show where the rows came from
                "source": (base.source or {}).get("source"),
            },
            parent=base_manifest_uri,
            dropped={**base.dropped, "feedback": {k: v for k, v in labelled.counts.items() if "rows_" in k}},
            notes={**base.notes, **notes},
        )
    return FeedbackMergeResult(feedback_uri, merged_uri, notes)


def feedback_lineage(manifest: Manifest) -> dict[str, Any]:
    """What a training run should log about feedback (zero rows and no URI for a snapshot without it)."""
    return {
        FEEDBACK_ROWS_USED: int(manifest.notes.get(FEEDBACK_ROWS_USED, 0)),
        FEEDBACK_SNAPSHOT_URI: manifest.notes.get(FEEDBACK_SNAPSHOT_URI),
        FEEDBACK_ROWS_UNLABELLED: int(manifest.notes.get(FEEDBACK_ROWS_UNLABELLED, 0)),
        FEEDBACK_ROWS_VERIFIED: int(manifest.notes.get(FEEDBACK_ROWS_VERIFIED, 0)),
        FEEDBACK_ROWS_OVER_CAP: int(manifest.notes.get(FEEDBACK_ROWS_OVER_CAP, 0)),
        FEEDBACK_ROWS_BY_REVIEWER: dict(manifest.notes.get(FEEDBACK_ROWS_BY_REVIEWER, {})),
    }


def log_feedback_lineage(
    mlflow_run_id: str, manifest: Manifest, *, client: MlflowClient | None = None
) -> dict[str, Any]:
    """Record the feedback counts and snapshot URI on an MLflow run (finished runs accept this too).

    ``client``: an ``MlflowClient`` for a tracking server other than the environment's (the DAG's comes
    from an Airflow connection).
    """
    from mlflow import MlflowClient

    lineage = feedback_lineage(manifest)
    client = client or MlflowClient()
    client.log_metric(mlflow_run_id, FEEDBACK_ROWS_USED, lineage[FEEDBACK_ROWS_USED])
    for name in (FEEDBACK_ROWS_UNLABELLED, FEEDBACK_ROWS_VERIFIED, FEEDBACK_ROWS_OVER_CAP):
        client.log_metric(mlflow_run_id, name, lineage[name])
    if lineage[FEEDBACK_SNAPSHOT_URI]:
        client.set_tag(mlflow_run_id, FEEDBACK_SNAPSHOT_URI, lineage[FEEDBACK_SNAPSHOT_URI])
    if lineage[FEEDBACK_ROWS_BY_REVIEWER]:
        client.log_dict(mlflow_run_id, lineage[FEEDBACK_ROWS_BY_REVIEWER], "feedback_rows_by_reviewer.json")
    return lineage


# --- exporting from the model server ------------------------------------------------------------------
EXPORT_STATE_FILE = "feedback/_export_state.json"


def export_state_uri(store: ObjectStore) -> str:
    return str(store.uri(store.settings.datasets_prefix, EXPORT_STATE_FILE))


#: The watermark's key: the last review decision exported (decisions, not row ids, so a row reviewed after
#: newer rows were exported still trains; a state file from before the review reads as 0).
WATERMARK_KEY = "last_review_seq"


def read_export_watermark(store: ObjectStore, state_uri: str | None = None) -> int:
    """The last review decision already exported (0 before the first export)."""
    try:
        return int(store.get_json(state_uri or export_state_uri(store)).get(WATERMARK_KEY, 0))
    except FileNotFoundError:
        return 0


def write_export_watermark(
    store: ObjectStore, last_review_seq: int, *, state_uri: str | None = None, **extra: Any
) -> None:
    """Advance the watermark; call it only after the snapshot that used those rows was written."""
    store.put_json(state_uri or export_state_uri(store), {WATERMARK_KEY: int(last_review_seq), **extra})


def fetch_feedback_export(
    server_url: str, token: str | None, *, since_review: int = 0, timeout_s: float = 60.0
) -> pd.DataFrame:
    """Reviewed rows (accepted or corrected) decided after ``since_review`` from the server's
    ``GET /feedback/export`` (parquet), through the one client of the model server
    (``sentiflow.serving_client``); its errors become ``ConnectionError``."""
    from sentiflow.serving_client import ModelServerClient, ModelServerError

    client = ModelServerClient(server_url, token, timeout_s=timeout_s)
    try:
        frame = client.feedback_frame(status="trainable", since_review=since_review)
    except ModelServerError as exc:
        hint = " (is SENTIFLOW_SERVER_REVIEWER_TOKEN right?)" if exc.status == 401 or not token else ""
        raise ConnectionError(f"feedback export from model server {server_url} failed: {exc}{hint}") from exc
    if "review_seq" in frame.columns:  # a server that ignores since_review must not make us train twice
        frame = frame[frame["review_seq"].fillna(0) > since_review].reset_index(drop=True)
    return frame


def export_and_merge(
    base_manifest_uri: str,
    *,
    run_id: str,
    server_url: str | None = None,
    token: str | None = None,
    store: ObjectStore | None = None,
    max_fraction: float | None = None,
) -> FeedbackMergeResult:
    """The weekly step: feedback reviewed since the last export → snapshots; then advance the watermark.

    The watermark moves only after both snapshots are written, so a failed run exports the same rows again
    next time rather than losing them. Server URL and token default to ``SENTIFLOW_SERVER_*``.
    """
    from sentiflow.settings.server import ServerSettings

    store = store or ObjectStore()
    server = ServerSettings()
    server_url = server_url or server.url
    if token is None and server.reviewer_token is not None:
        token = server.reviewer_token.get_secret_value()
    since = read_export_watermark(store)
    rows = fetch_feedback_export(server_url, token, since_review=since)
    last = int(rows["review_seq"].max()) if "review_seq" in rows.columns and len(rows) else since
    result = merge_feedback_into_snapshot(
        rows,
        base_manifest_uri,
        run_id=run_id,
        store=store,
        source={"server": server_url, "since_review_seq": since, "last_review_seq": last},
        max_fraction=max_fraction,
    )
    write_export_watermark(store, last, run_id=run_id, feedback_snapshot_uri=result.feedback_manifest_uri)
    return result
