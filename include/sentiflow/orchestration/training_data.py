"""Which snapshot the training tasks read: the clean one, or the clean one enriched with user feedback.

Kept out of ``data_tasks.py`` so the rule (and its error message) is tested without Airflow. The weekly run
has ``use_feedback`` on; a model server that cannot be reached then **fails** the run instead of quietly
retraining without feedback: the release tail needs the same server a few tasks later, and a silent
fallback would hide a broken feedback loop for weeks. A user who wants a run without feedback says so with
``use_feedback=false``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sentiflow.orchestration.params import FeedbackParams


class FeedbackExportError(RuntimeError):
    """``use_feedback`` is on but the feedback could not be exported or merged; names what to do."""


def training_manifest_uri(
    clean_manifest_uri: str,
    feedback: FeedbackParams,
    *,
    run_id: str,
    server_url: str,
    token: str | None,
    store: Any,
    log: Callable[[str], None] = print,
) -> str:
    """The manifest URI training should read; with ``use_feedback`` the merged clean+feedback snapshot."""
    from sentiflow.feedback.dataset import FeedbackDataError, export_and_merge

    if not feedback.use_feedback:
        log(f"use_feedback is off: training on the clean snapshot {clean_manifest_uri}")
        return clean_manifest_uri
    try:
        result = export_and_merge(
            clean_manifest_uri,
            run_id=run_id,
            server_url=server_url,
            token=token,
            store=store,
            max_fraction=feedback.feedback_max_fraction,
        )
    except (ConnectionError, FeedbackDataError) as exc:
        raise FeedbackExportError(
            f"use_feedback is on but the feedback export failed: {exc}. Check the model server "
            "connection (URL and reviewer token), or trigger with use_feedback=false to retrain without "
            "feedback."
        ) from exc
    notes = result.notes
    log(
        f"feedback: {notes.get('feedback_rows_total', 0)} new rows exported, {result.rows_used} added to "
        f"train (by reviewer: {notes.get('feedback_rows_by_reviewer', {})}; "
        f"{notes.get('feedback_rows_unreviewed', 0)} not accepted by a reviewer, "
        f"{notes.get('feedback_rows_unverified', 0)} unverified, "
        f"{notes.get('feedback_rows_over_cap', 0)} over the cap, "
        f"{notes.get('feedback_rows_unlabelled', 0)} without a true label, "
        f"{notes.get('feedback_rows_in_base')} already in the base splits); feedback snapshot "
        f"{result.feedback_manifest_uri}; training on {result.merged_manifest_uri}"
    )
    return result.merged_manifest_uri
