"""Inference-check cases drawn from the test snapshot and the required accuracy derived from the run."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from sentiflow.release.check_plan import CheckParams, plan_check
from sentiflow.release.checks import (
    MAX_SAMPLED_TEXT_CHARS,
    CheckCase,
    InferenceCheckError,
    required_accuracy,
    sample_cases_from,
)

NAMES = ["negative", "neutral", "positive"]


def sample_cases(frame: pd.DataFrame, label_names, per_class: int, seed: int) -> list[CheckCase]:
    """``sample_cases_from`` over one in-memory frame (a split of one batch)."""
    return sample_cases_from(lambda: [frame], label_names, per_class, seed)


def three_class_frame(n_per_class: int = 10) -> pd.DataFrame:
    rows = [(f"{name} text {i}", label) for label, name in enumerate(NAMES) for i in range(n_per_class)]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_sampled_cases_cover_every_class_with_its_name_and_are_seeded() -> None:
    cases = sample_cases(three_class_frame(), NAMES, 4, seed=7)
    assert len(cases) == 12
    for case in cases:
        assert case.text.startswith(case.expected)  # the text's own class name is the expected label
    assert [c.text for c in cases] == [c.text for c in sample_cases(three_class_frame(), NAMES, 4, seed=7)]
    assert [c.text for c in cases] != [c.text for c in sample_cases(three_class_frame(), NAMES, 4, seed=8)]
    few = sample_cases(three_class_frame(2), NAMES, 4, seed=7)  # a class with fewer rows gives what it has
    assert len(few) == 6
    assert sample_cases(three_class_frame(), NAMES, 0, seed=7) == []


def pandas_sample_cases(frame: pd.DataFrame, label_names, per_class: int, seed: int) -> list[CheckCase]:
    """The check's sampling before it streamed: the whole split in pandas, ``DataFrame.sample`` per class."""
    cases = []
    texts = frame["text"].astype(str)
    for label_id, name in enumerate(label_names):
        rows = frame[(frame["label"] == label_id) & texts.str.strip().ne("")]
        short = rows[rows["text"].astype(str).str.len() <= MAX_SAMPLED_TEXT_CHARS]
        pool = short if len(short) >= min(per_class, len(rows)) else rows
        taken = pool.sample(n=min(per_class, len(pool)), random_state=seed)
        cases.extend(CheckCase(str(t)[: MAX_SAMPLED_TEXT_CHARS * 5], name) for t in taken["text"])
    return cases


@pytest.mark.parametrize("seed", [0, 7, 42])
def test_streamed_sampling_draws_what_pandas_drew_from_the_whole_split(seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 2000
    lengths = rng.choice([5, 50, 2500], n, p=[0.3, 0.6, 0.1])  # some too long, so some pools are all-long
    frame = pd.DataFrame(
        {
            "text": ["  " if i % 97 == 0 else f"row {i} " + "x" * int(k) for i, k in enumerate(lengths)],
            "label": rng.choice([0, 1, 2], n, p=[0.6, 0.395, 0.005]),  # class 2: a handful of rows
        }
    )
    frame.loc[frame["label"] == 2, "text"] += "y" * 3000  # class 2 holds long texts only
    batches = [frame.iloc[i : i + 137] for i in range(0, n, 137)]
    for per_class in (1, 4, 50):
        expected = pandas_sample_cases(frame, NAMES, per_class, seed)
        assert sample_cases_from(lambda: iter(batches), NAMES, per_class, seed) == expected
        assert sample_cases(frame, NAMES, per_class, seed) == expected


def test_required_accuracy_defaults_to_a_margin_below_test_accuracy() -> None:
    assert required_accuracy(None, 0.62, 0.2) == pytest.approx(0.42)
    assert required_accuracy("", 0.1, 0.2) == 0.0
    assert required_accuracy(0.9, 0.62, 0.2) == 0.9  # explicit wins
    with pytest.raises(InferenceCheckError, match="logged no test_accuracy"):
        required_accuracy(None, None, 0.2)


def test_plan_check_without_sampling_takes_the_users_cases_and_needs_some() -> None:
    """With ``check_cases_per_class`` 0 the plan reads no snapshot (no store); sampling from the deployed
    run's snapshot is in tests/integration/data/test_check_sampling.py."""
    run = SimpleNamespace(data=SimpleNamespace(tags={}, metrics={"test_accuracy": 0.7}))
    client = SimpleNamespace(get_run=lambda run_id: run)
    mine = [{"text": "my own neutral text", "label": "neutral"}]
    only_mine = plan_check(
        None, client, "run-1", CheckParams(check_cases_per_class=0, check_texts=mine, check_min_accuracy=1),
        seed=42,
    )  # fmt: skip
    assert [(c.text, c.expected) for c in only_mine.cases] == [("my own neutral text", "neutral")]
    assert only_mine.required_accuracy == 1.0 and only_mine.sampled == 0 and only_mine.sampled_from is None
    params = CheckParams(check_cases_per_class=0, check_texts=mine)
    margin = plan_check(None, client, "run-1", params, seed=42)
    assert margin.required_accuracy == pytest.approx(0.5)  # test_accuracy 0.7 less the default margin
    with pytest.raises(InferenceCheckError, match="no check cases"):
        plan_check(None, client, "run-1", CheckParams(check_cases_per_class=0, check_texts=[]), seed=42)
    with pytest.raises(InferenceCheckError, match="names no dataset snapshot"):
        plan_check(None, client, "run-1", CheckParams(check_cases_per_class=2, check_texts=mine), seed=42)
