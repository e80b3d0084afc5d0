"""Feedback-enriched training data: labelling rules (pure) and the two snapshots on the real local S3."""

from __future__ import annotations

import pandas as pd
import pytest

from sentiflow.data.snapshot import read_manifest, read_snapshot, read_split, write_snapshot
from sentiflow.feedback.dataset import (
    FeedbackDataError,
    feedback_lineage,
    label_feedback,
    merge_feedback_into_snapshot,
    read_export_watermark,
    write_export_watermark,
)
from sentiflow.names import (
    FEEDBACK_ROWS_BY_REVIEWER,
    FEEDBACK_ROWS_OVER_CAP,
    FEEDBACK_ROWS_UNLABELLED,
    FEEDBACK_ROWS_UNREVIEWED,
    FEEDBACK_ROWS_USED,
    FEEDBACK_ROWS_VERIFIED,
    FEEDBACK_SNAPSHOT_URI,
)

LABELS = ["negative", "positive"]


def feedback(rows: list[tuple], verified: bool = True, status: str = "accepted") -> pd.DataFrame:
    """An export's rows, accepted by reviewer ann unless ``status`` says otherwise."""
    return pd.DataFrame(
        rows, columns=["text", "predicted_label", "correct", "true_label", "created_at"]
    ).assign(id=lambda f: range(1, len(f) + 1), verified=verified, status=status, reviewed_by="ann")


def test_correct_means_predicted_label_and_unlabelled_wrong_rows_are_counted_not_used() -> None:
    rows = feedback(
        [
            ("A great film!", "positive", True, None, "2025-01-01T10:00:00Z"),
            ("Dull <br/>and long", "positive", False, "negative", "2025-01-01T10:01:00Z"),
            ("no idea what this is", "negative", False, None, "2025-01-01T10:02:00Z"),
            ("weird label", "negative", False, "sarcastic", "2025-01-01T10:03:00Z"),
            ("   <br/>  ", "negative", True, None, "2025-01-01T10:04:00Z"),
        ]
    )
    out = label_feedback(rows, LABELS)
    assert out.frame[["text", "label"]].to_dict("records") == [
        {"text": "a great film", "label": 1},  # cleaned like the dataset
        {"text": "dull and long", "label": 0},
    ]
    assert out.counts[FEEDBACK_ROWS_UNLABELLED] == 1
    assert out.counts["feedback_rows_unknown_label"] == 1
    assert out.counts["feedback_rows_empty_after_cleaning"] == 1
    assert out.counts["feedback_rows_total"] == 5 and out.counts["feedback_rows_labelled"] == 2


def test_latest_judgement_of_a_text_wins() -> None:
    rows = feedback(
        [
            ("same text", "positive", False, "negative", "2025-01-02T00:00:00Z"),
            ("Same text.", "positive", True, None, "2025-01-01T00:00:00Z"),
        ]
    )
    out = label_feedback(rows, LABELS)
    assert out.frame[["text", "label"]].to_dict("records") == [{"text": "same text", "label": 0}]
    assert out.counts["feedback_rows_duplicate_in_feedback"] == 1


def test_csv_style_values_and_label_ids_are_understood() -> None:
    rows = pd.DataFrame(
        {
            "text": ["x y", "z w"],
            "predicted_label": ["1", "positive"],
            "correct": ["true", "0"],
            "true_label": [None, "0"],
            "verified": ["1", "true"],
            "status": ["accepted", "Accepted"],
        }
    )
    out = label_feedback(rows, LABELS)
    assert out.frame["label"].tolist() == [1, 0]


def test_bad_input_gets_an_error_that_names_the_problem() -> None:
    with pytest.raises(FeedbackDataError, match=r"lacks column\(s\) \['correct'\]"):
        label_feedback(pd.DataFrame({"text": ["a"], "predicted_label": ["positive"]}), LABELS)
    with pytest.raises(FeedbackDataError, match=r"'correct' must be true/false.*maybe"):
        label_feedback(
            pd.DataFrame({"text": ["a"], "predicted_label": ["positive"], "correct": ["maybe"]}), LABELS
        )


@pytest.fixture
def base_snapshot(store) -> str:
    store.ensure_bucket()
    frames = {
        "train": pd.DataFrame({"text": ["good movie", "bad movie", "fine film"], "label": [1, 0, 1]}),
        "validation": pd.DataFrame({"text": ["validation review"], "label": [0]}),
        "test": pd.DataFrame({"text": ["test review", "another test"], "label": [1, 0]}),
    }
    return write_snapshot(
        store,
        store.uri("datasets", "base-run", "clean"),
        frames,
        kind="clean",
        run_id="base-run",
        source={"type": "test"},
        label_names=LABELS,
    )


def test_merge_adds_new_labelled_feedback_to_train_only(store, base_snapshot: str) -> None:
    rows = feedback(
        [
            ("Loved it!", "positive", True, None, "2025-01-01T10:00:00Z"),  # new → used
            ("Test review", "negative", False, "positive", "2025-01-01T10:01:00Z"),  # in test → dropped
            ("Validation review.", "negative", True, None, "2025-01-01T10:02:00Z"),  # in val → dropped
            ("good movie", "positive", True, None, "2025-01-01T10:03:00Z"),  # in train → dropped
            ("boring", "positive", False, "negative", "2025-01-01T10:04:00Z"),  # new → used
            ("who knows", "positive", False, None, "2025-01-01T10:05:00Z"),  # no label → counted
        ]
    )
    result = merge_feedback_into_snapshot(rows, base_snapshot, run_id="weekly-1", store=store)

    merged, frames = read_snapshot(store, result.merged_manifest_uri)
    assert merged.kind == "clean" and merged.parent == base_snapshot
    assert frames["train"]["text"].tolist() == ["good movie", "bad movie", "fine film", "loved it", "boring"]
    assert frames["train"]["label"].tolist() == [1, 0, 1, 1, 0]
    # validation and test are exactly the base's: feedback never leaks into them
    _, base_frames = read_snapshot(store, base_snapshot)
    for split in ("validation", "test"):
        pd.testing.assert_frame_equal(frames[split], base_frames[split])
    assert merged.notes[FEEDBACK_ROWS_USED] == 2 == result.rows_used
    assert merged.notes[FEEDBACK_ROWS_UNLABELLED] == 1
    assert merged.notes["feedback_rows_in_base"] == {"train": 1, "validation": 1, "test": 1}
    assert merged.notes[FEEDBACK_SNAPSHOT_URI] == result.feedback_manifest_uri
    assert feedback_lineage(merged)[FEEDBACK_ROWS_USED] == 2

    fb = read_manifest(store, result.feedback_manifest_uri)
    assert fb.kind == "feedback" and fb.rows() == {"train": 5}  # every labelled row, before dedup vs base
    assert fb.source["last_created_at"].startswith("2025-01-01T10:04")
    assert "loved it" in read_split(store, fb, "train")["text"].tolist()
    assert "/weekly-1/" in result.feedback_manifest_uri and "/weekly-1/" in result.merged_manifest_uri


def test_merge_streams_a_base_of_many_parts_into_the_same_rows(store) -> None:
    """A base split over many small parts (read batch by batch): the merged snapshot is the base's rows, in
    order, then the new feedback; texts anywhere in the base (a late part, validation) are left out."""
    from sentiflow.settings.components import DataSettings

    store.ensure_bucket()
    train = pd.DataFrame(
        {"text": [f"base review {i}" for i in range(500)], "label": [i % 2 for i in range(500)]}
    )
    frames = {"train": train, "validation": train.head(30).assign(text=lambda f: "val " + f["text"])}
    small = DataSettings(part_rows=40, batch_rows=17)
    base = write_snapshot(
        store, store.uri("datasets", "many-parts", "clean"), frames, kind="clean", run_id="many-parts",
        source={"type": "test"}, label_names=LABELS, settings=small,
    )  # fmt: skip
    assert len(read_manifest(store, base).splits["train"].parts) == 13
    rows = feedback(
        [
            ("Base review 499", "positive", True, None, "2025-01-01T10:00:00Z"),  # the last part: dropped
            ("val base review 3", "negative", True, None, "2025-01-01T10:01:00Z"),  # in validation
            ("brand new one", "negative", True, None, "2025-01-01T10:02:00Z"),
        ]
    )
    result = merge_feedback_into_snapshot(rows, base, run_id="many-parts-fb", store=store)
    merged, out = read_snapshot(store, result.merged_manifest_uri)
    assert out["train"]["text"].tolist() == [*train["text"], "brand new one"]
    assert out["train"]["label"].tolist() == [*train["label"], 0]
    pd.testing.assert_frame_equal(out["validation"], read_snapshot(store, base)[1]["validation"])
    assert merged.notes["feedback_rows_in_base"] == {"train": 1, "validation": 1}


def test_merge_with_no_feedback_keeps_the_base_train_split(store, base_snapshot: str) -> None:
    result = merge_feedback_into_snapshot(feedback([]), base_snapshot, run_id="weekly-empty", store=store)
    merged, frames = read_snapshot(store, result.merged_manifest_uri)
    assert merged.notes[FEEDBACK_ROWS_USED] == 0
    assert len(frames["train"]) == 3


def test_only_verified_feedback_is_trained_on() -> None:
    rows = pd.concat(
        [
            feedback([("signed and fine", "positive", True, None, "2025-01-01T10:00:00Z")]),
            feedback([("forged banana", "positive", False, "negative", "2025-01-01T10:01:00Z")], False),
        ],
        ignore_index=True,
    )
    out = label_feedback(rows, LABELS)
    assert out.frame["text"].tolist() == ["signed and fine"]
    assert out.counts[FEEDBACK_ROWS_VERIFIED] == 1 and out.counts["feedback_rows_unverified"] == 1
    legacy = rows.drop(columns="verified")  # an export from a server before signed prediction ids
    assert label_feedback(legacy, LABELS).frame.empty


def test_only_reviewed_feedback_trains_with_the_reviewers_label_and_name(store, base_snapshot: str) -> None:
    line = ("fresh review {}", "positive", False, "negative", "2025-01-01T10:00:00Z")
    rows = pd.concat(
        [
            feedback([tuple(v.format(i) if isinstance(v, str) else v for v in line) for i in range(2)]),
            feedback([(line[0].format(2), *line[1:])], status="pending"),
            feedback([(line[0].format(3), *line[1:])], status="rejected"),
            feedback([(line[0].format(4), *line[1:])], status="corrected").assign(
                review_label="positive", reviewed_by="bob"
            ),
        ],
        ignore_index=True,
    )
    out = label_feedback(rows, LABELS)
    assert out.frame[["text", "label", "reviewed_by"]].to_dict("records") == [
        {"text": "fresh review 0", "label": 0, "reviewed_by": "ann"},
        {"text": "fresh review 1", "label": 0, "reviewed_by": "ann"},
        {"text": "fresh review 4", "label": 1, "reviewed_by": "bob"},  # the reviewer's label wins
    ]
    assert out.counts[FEEDBACK_ROWS_UNREVIEWED] == 2 and out.counts["feedback_rows_reviewed"] == 3
    assert label_feedback(rows.drop(columns="status"), LABELS).frame.empty  # an export without review
    result = merge_feedback_into_snapshot(rows, base_snapshot, run_id="weekly-reviewed", store=store)
    assert result.notes[FEEDBACK_ROWS_BY_REVIEWER] == {"ann": 2, "bob": 1}


def test_feedback_added_to_train_is_capped_relative_to_the_train_split(store, base_snapshot: str) -> None:
    rows = feedback([(f"review number {i}", "positive", True, None, f"2025-01-0{i + 1}") for i in range(5)])
    result = merge_feedback_into_snapshot(
        rows, base_snapshot, run_id="weekly-cap", store=store, max_fraction=0.5
    )
    merged, frames = read_snapshot(store, result.merged_manifest_uri)
    # 3 base train rows x 0.5 → 1 feedback row, the most recent
    assert frames["train"]["text"].tolist()[3:] == ["review number 4"]
    assert merged.notes[FEEDBACK_ROWS_USED] == 1 and merged.notes[FEEDBACK_ROWS_OVER_CAP] == 4
    assert merged.notes[FEEDBACK_ROWS_VERIFIED] == 5
    assert read_manifest(store, result.feedback_manifest_uri).rows() == {"train": 5}  # nothing lost
    lineage = feedback_lineage(merged)
    assert lineage[FEEDBACK_ROWS_VERIFIED] == 5 and lineage[FEEDBACK_ROWS_OVER_CAP] == 4


def test_export_watermark_round_trip(store) -> None:
    store.ensure_bucket()
    uri = str(store.uri("datasets", "wm-test", "state.json"))
    assert read_export_watermark(store, uri) == 0
    write_export_watermark(store, 41, state_uri=uri, run_id="r")
    assert read_export_watermark(store, uri) == 41
