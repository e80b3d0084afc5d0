"""The drift report's streamed statistics equal the ones computed on whole columns (the code before)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pytest

from sentiflow.feedback.drift_metrics import SplitProfile, histogram_quantiles, length_psi
from sentiflow.feedback.production_sample import hash_tokens
from sentiflow.settings.components import DriftSettings

LABELS = ["negative", "neutral", "positive"]


def psi(expected: Sequence[float], actual: Sequence[float], bins: int) -> float:
    """PSI on whole columns: bins on the quantiles of ``expected``, shares clipped as the report clips."""
    e, a = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    e_shares = np.bincount(np.searchsorted(edges, e, side="right"), minlength=edges.size + 1) / e.size
    a_shares = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1) / a.size
    e_shares, a_shares = np.clip(e_shares, 1e-4, None), np.clip(a_shares, 1e-4, None)
    return float(np.sum((a_shares - e_shares) * np.log(a_shares / e_shares)))


def hashed_vocabulary(texts: Iterable[str], settings: DriftSettings) -> set[str]:
    """Token hashes seen at least ``vocab_min_count`` times in the whole column."""
    counts = Counter(token for text in texts for token in text.split())
    frequent = [t for t, n in counts.items() if n >= settings.vocab_min_count]
    return set(hash_tokens(frequent, settings.hash_key.get_secret_value().encode()))


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
