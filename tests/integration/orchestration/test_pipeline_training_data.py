"""The training_data step: which snapshot training reads, and what an unreachable server does (real S3)."""

from __future__ import annotations

import socket

import pandas as pd
import pytest

from sentiflow.data.snapshot import write_snapshot
from sentiflow.feedback.dataset import read_export_watermark, write_export_watermark
from sentiflow.orchestration.params import FeedbackParams
from sentiflow.orchestration.training_data import FeedbackExportError, training_manifest_uri


@pytest.fixture
def clean_uri(store) -> str:
    store.ensure_bucket()
    frames = {
        "train": pd.DataFrame({"text": ["good movie", "bad movie"], "label": [1, 0]}),
        "validation": pd.DataFrame({"text": ["validation review"], "label": [0]}),
        "test": pd.DataFrame({"text": ["test review"], "label": [1]}),
    }
    return write_snapshot(
        store,
        store.uri("datasets", "td-base", "clean"),
        frames,
        kind="clean",
        run_id="td-base",
        source={"type": "test"},
        label_names=["negative", "positive"],
    )


def dead_url() -> str:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_without_feedback_training_reads_the_clean_snapshot(store, clean_uri: str) -> None:
    lines: list[str] = []
    off = FeedbackParams(use_feedback=False)
    uri = training_manifest_uri(
        clean_uri, off, run_id="r", server_url="", token=None, store=store, log=lines.append
    )
    assert uri == clean_uri and "use_feedback is off" in lines[0]


def test_unreachable_server_fails_with_a_message_that_says_what_to_do(store, clean_uri: str) -> None:
    write_export_watermark(store, 7, run_id="earlier")
    url = dead_url()
    with pytest.raises(FeedbackExportError) as info:
        on = FeedbackParams(use_feedback=True)
        training_manifest_uri(clean_uri, on, run_id="r-dead", server_url=url, token="t", store=store)
    message = str(info.value)
    assert url in message and "unreachable" in message and "use_feedback=false" in message
    assert read_export_watermark(store) == 7  # nothing exported, nothing skipped next time
    assert not store.exists(str(store.uri("datasets", "r-dead", "clean-with-feedback", "manifest.json")))
