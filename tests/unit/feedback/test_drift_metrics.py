"""The drift report's streamed statistics equal the ones computed on whole columns (the code before)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sentiflow.feedback.drift_metrics import (
    SplitProfile,
    hashed_vocabulary,
    histogram_quantiles,
    length_psi,
    psi,
)
from sentiflow.settings.components import DriftSettings

LABELS = ["negative", "neutral", "positive"]


def reviews(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = np.array(["good", "bad", "film", "plot", "cast", "dull", "gem", "it", "was", "a"])
    lengths = rng.integers(1, 60, n)
    texts = [" ".join(rng.choice(words, k)) for k in lengths]
    return pd.DataFrame({"text": texts, "label": rng.integers(0, 3, n)})


@pytest.mark.parametrize("seed", range(5))
def test_histogram_quantiles_are_numpys_to_the_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 50 + 400 * seed, rng.integers(1, 3000))
    q = np.concatenate([np.linspace(0, 1, 11), [0.99, 0.123456, 1 / 3]])
    np.testing.assert_array_equal(histogram_quantiles(np.bincount(values), q), np.quantile(values, q))


def test_a_profile_built_batch_by_batch_equals_the_whole_split() -> None:
    frame = reviews(3000, 0)
    batches = [frame.iloc[i : i + 211].reset_index(drop=True) for i in range(0, len(frame), 211)]
    streamed, whole = SplitProfile.from_frames(batches, LABELS), SplitProfile.from_frames([frame], LABELS)
    assert (
        streamed.label_counts
        == whole.label_counts
        == {name: int((frame["label"] == i).sum()) for i, name in enumerate(LABELS)}
    )
    np.testing.assert_array_equal(streamed.length_counts, np.bincount(frame["text"].str.len()))
    s = DriftSettings(vocab_min_count=3)
    assert streamed.vocabulary(s) == hashed_vocabulary(frame["text"], s)  # the whole-column vocabulary
    production = reviews(500, 1)["text"].str.len().to_numpy() // 2
    for bins in (4, 10, 25):
        assert length_psi(streamed, production, bins) == psi(frame["text"].str.len(), production, bins)


def test_length_psi_refuses_empty_samples() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        length_psi(SplitProfile.from_frames([reviews(10, 2)], LABELS), [])
