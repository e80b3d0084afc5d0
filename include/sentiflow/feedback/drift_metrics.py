"""Drift metrics, pure and streamable: PSI of a numeric feature and of categories, the training split's
profile (``SplitProfile``: built batch by batch, memory bounded by the vocabulary, not by the rows) and the
out-of-vocabulary rate on keyed token hashes.

A text-length histogram stands in for the lengths themselves: ``histogram_quantiles`` gives numpy's own
quantiles of the values it counts, to the bit, so the PSI bins (and the PSI) are the ones a list of every
training text's length would give.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentiflow.feedback.production_sample import hash_tokens
from sentiflow.names import LABEL_COLUMN, TEXT_COLUMN
from sentiflow.settings.components import DriftSettings

_EPS = 1e-4


def _psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def shares(counts: Mapping[str, float], categories: Sequence[str]) -> np.ndarray:
    total = sum(counts.get(c, 0) for c in categories)
    if total == 0:
        return np.zeros(len(categories))
    return np.array([counts.get(c, 0) / total for c in categories], dtype=float)


def categorical_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI over categories (labels); a category missing on one side counts as a tiny share."""
    categories = sorted(set(expected) | set(actual))
    return _psi_from_shares(shares(expected, categories), shares(actual, categories))


def _frequent_hashes(counts: Counter[str], settings: DriftSettings) -> set[str]:
    frequent = [t for t, n in counts.items() if n >= settings.vocab_min_count]
    return set(hash_tokens(frequent, settings.hash_key.get_secret_value().encode()))


def oov_counts(token_hashes: Iterable[Sequence[str]], vocabulary: set[str]) -> tuple[int, int]:
    """Tokens outside ``vocabulary``, and tokens in all."""
    total = oov = 0
    for hashes in token_hashes:
        total += len(hashes)
        oov += sum(1 for h in hashes if h not in vocabulary)
    return oov, total


def oov_rate(token_hashes: Iterable[Sequence[str]], vocabulary: set[str]) -> float:
    oov, total = oov_counts(token_hashes, vocabulary)
    return oov / total if total else 0.0


def histogram_quantiles(counts: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``np.quantile(values, quantiles)`` (its default, linear method, to the bit) of the integer values that
    ``counts`` counts (``counts[v]`` = how many values equal ``v``), without the values themselves."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1]) if len(cumulative) else 0
    if n == 0:
        raise ValueError("quantiles of an empty histogram")
    virtual = (n - 1) * np.asarray(quantiles, dtype=np.float64)
    previous = np.floor(virtual)
    below = np.searchsorted(cumulative, previous.astype(np.int64), side="right").astype(np.float64)
    above = np.searchsorted(cumulative, np.minimum(previous + 1, n - 1).astype(np.int64), side="right")
    gamma = virtual - previous
    difference = above - below  # numpy's _lerp: a + d·t, or b − d·(1 − t) from t = 0.5 on
    return np.where(gamma >= 0.5, above - difference * (1 - gamma), below + difference * gamma)


@dataclass
class SplitProfile:
    """What the drift report needs of a training split, gathered batch by batch (``from_frames``): rows
    per label, rows per text length (a histogram, so quantiles and PSI bins are exact without a value per
    row) and token counts (the vocabulary: memory grows with distinct tokens, not with rows)."""

    label_counts: dict[str, int]
    length_counts: np.ndarray
    token_counts: Counter[str]

    @classmethod
    def from_frames(cls, frames: Iterable[pd.DataFrame], label_names: Sequence[str]) -> SplitProfile:
        labels = np.zeros(len(label_names), dtype=np.int64)
        lengths = np.zeros(1, dtype=np.int64)
        tokens: Counter[str] = Counter()
        for frame in frames:
            ids = frame[LABEL_COLUMN].to_numpy(dtype=np.int64)
            labels += np.bincount(ids[(ids >= 0) & (ids < len(label_names))], minlength=len(label_names))
            batch = np.bincount(frame[TEXT_COLUMN].str.len().to_numpy(dtype=np.int64))
            lengths = add_histograms(lengths, batch)
            for text in frame[TEXT_COLUMN]:
                tokens.update(text.split())
        counts = {name: int(labels[i]) for i, name in enumerate(label_names)}
        return cls(counts, lengths, tokens)

    def vocabulary(self, settings: DriftSettings) -> set[str]:
        return _frequent_hashes(self.token_counts, settings)


def add_histograms(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two histograms of different lengths, summed."""
    if len(left) < len(right):
        left, right = right, left
    total = left.copy()
    total[: len(right)] += right
    return total


def length_psi(train: SplitProfile, actual: Sequence[float], bins: int = 10) -> float:
    """PSI of text lengths, binned on the quantiles of the training split's lengths (so each bin holds
    ~1/bins of them), from its length histogram."""
    a = np.asarray(actual, dtype=float)
    rows = int(train.length_counts.sum())
    if rows == 0 or a.size == 0:
        raise ValueError(f"PSI needs two non-empty samples, got {rows} and {a.size} values")
    cuts = histogram_quantiles(train.length_counts, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(cuts)
    bin_of_length = np.searchsorted(edges, np.arange(len(train.length_counts)), side="right")
    e_counts = np.bincount(bin_of_length, weights=train.length_counts, minlength=edges.size + 1)
    a_shares = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1) / a.size
    return _psi_from_shares(e_counts / rows, a_shares)
