"""Split carving and sampling by hash: which rows of a source go to train/validation/test, and are kept.

Every decision is ``hash < bound[label]``: a row's 64-bit hash (``hashing.text_hashes``: ``split_hash``
for carving, ``sample_hash`` for sampling, keyed by the seed) against a bound per class. Bounds are
chosen once, before the rows are written, in one of two ways:

- **exact** (sources with at most ``DataSettings.exact_rows`` rows): the hashes and labels of every row
  (17 bytes a row) are read first and each bound is the hash at the wanted rank within its class, so
  counts are exact and stratified (``sample_size=400`` gives 400 rows, classes in the source's
  proportions; a carved split has every class) — what collect did before it streamed.
- **fraction** (larger sources): ``bound = fraction × 2**64`` for every class, from the row counts of
  the first pass. Counts are then binomial around the target (±√n), proportions the source's; no
  per-row state is held, so memory does not grow with the source.

Either way a decision depends only on the text, its label and the seed, never on the row's position or
file: a source cut into many files gives the same rows, and copies of one text (with one label) always
land in the same split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sentiflow.data.hashing import TWO_64, threshold
from sentiflow.names import SPLITS

_MAX = np.uint64(TWO_64 - 1)


@dataclass
class Bounds:
    """One bound per class id; ``2**64`` (keep all) is stored as a flag, since it does not fit a uint64."""

    values: np.ndarray  # uint64 per class
    everything: np.ndarray  # bool per class

    @classmethod
    def of(cls, bounds: list[int]) -> Bounds:
        return cls(
            values=np.array([min(b, TWO_64 - 1) for b in bounds], dtype=np.uint64),
            everything=np.array([b >= TWO_64 for b in bounds], dtype=bool),
        )

    def below(self, hashes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``hashes < bound[label]`` per row."""
        return (hashes < self.values[labels]) | self.everything[labels]


@dataclass
class SplitPlan:
    """Where each row goes and whether it is kept; ``origin`` and ``mode`` are recorded in the manifest."""

    carve_test: Bounds | None = None  # of source train rows: split_hash below → test
    carve_validation: Bounds | None = None  # below → validation (when not test)
    keep: dict[str, Bounds] = field(default_factory=dict)  # per output split: sample_hash below → kept
    origin: dict[str, str] = field(default_factory=dict)
    mode: str = "fraction"
    expected_rows: dict[str, float] = field(default_factory=dict)

    def targets(self, source_split: str, split_hash: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """A mask per output split of the rows of one batch of ``source_split``."""
        if source_split != "train":
            return {source_split: np.ones(len(split_hash), dtype=bool)}
        test = np.zeros(len(split_hash), dtype=bool)
        validation = np.zeros(len(split_hash), dtype=bool)
        if self.carve_test is not None:
            test = self.carve_test.below(split_hash, labels)
        if self.carve_validation is not None:
            validation = self.carve_validation.below(split_hash, labels) & ~test
        return {"train": ~(test | validation), "validation": validation, "test": test}


def carved_fractions(
    present: set[str], validation_fraction: float, test_fraction: float
) -> tuple[float, float]:
    """Fractions of the source's train rows that become test and validation (0 where the source has it)."""
    carve_test = 0.0 if "test" in present else test_fraction
    carve_validation = 0.0 if "validation" in present else validation_fraction * (1 - carve_test)
    return carve_test, carve_validation


def _origins(present: set[str], validation_fraction: float, test_fraction: float, how: str) -> dict[str, str]:
    origin = {split: "source" for split in present}
    if "test" not in present:
        origin["test"] = f"carved from train ({test_fraction:.0%}, {how})"
    if "validation" not in present:
        origin["validation"] = f"carved from train ({validation_fraction:.0%} of the rest, {how})"
    return origin


def fraction_plan(
    rows: Mapping[str, int],
    num_labels: int,
    *,
    sample_size: int | None,
    eval_sample_size: int | None,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> SplitPlan:
    """Bounds from fractions: ``rows`` are the source's row counts per split (from the first pass)."""
    carve_test, carve_validation = carved_fractions(set(rows), validation_fraction, test_fraction)
    plan = SplitPlan(
        origin=_origins(
            set(rows), validation_fraction, test_fraction, f"by a keyed hash of the text, seed {seed}"
        ),
        mode="fraction",
    )
    if carve_test:
        plan.carve_test = Bounds.of([threshold(carve_test)] * num_labels)
    if carve_validation:
        plan.carve_validation = Bounds.of([threshold(carve_test + carve_validation)] * num_labels)
    expected = {
        "train": rows["train"] * (1 - carve_test - carve_validation),
        "validation": rows.get("validation", rows["train"] * carve_validation),
        "test": rows.get("test", rows["train"] * carve_test),
    }
    for split in SPLITS:
        size = sample_size if split == "train" else eval_sample_size
        fraction = 1.0 if size is None or expected[split] <= 0 else min(1.0, size / expected[split])
        plan.keep[split] = Bounds.of([threshold(fraction)] * num_labels)
        plan.expected_rows[split] = round(expected[split] * fraction, 1)
    return plan


def allocate(counts: np.ndarray, size: int) -> np.ndarray:
    """``size`` rows over classes in proportion to ``counts`` (largest remainders), never above a count."""
    total = int(counts.sum())
    if size >= total:
        return counts.copy()
    share = counts * (size / total)
    taken = np.floor(share).astype(np.int64)
    for i in np.argsort(-(share - taken), kind="stable")[: size - int(taken.sum())]:
        taken[i] += 1
    return np.minimum(taken, counts)


def _rank_bounds(hashes: np.ndarray, labels: np.ndarray, ranks: np.ndarray) -> Bounds:
    """Per class c, the hash value below which exactly ``ranks[c]`` of its rows fall (2**64: all)."""
    bounds = []
    for c, rank in enumerate(ranks):
        ordered = np.sort(hashes[labels == c])
        bounds.append(int(ordered[rank]) if rank < len(ordered) else TWO_64)
    return Bounds.of(bounds)


def exact_plan(
    hashes: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_labels: int,
    *,
    sample_size: int | None,
    eval_sample_size: int | None,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> SplitPlan:
    """Bounds at exact ranks, per class: ``hashes[split] = (split_hash, sample_hash, label ids)``."""
    present = set(hashes)
    plan = SplitPlan(
        origin=_origins(
            present, validation_fraction, test_fraction, f"stratified, by a keyed hash, seed {seed}"
        ),
        mode="exact",
    )
    split_hash, sample_hash, labels = hashes["train"]
    counts = np.bincount(labels, minlength=num_labels)
    carved = {"train": (sample_hash, labels)}
    outside = np.ones(len(labels), dtype=bool)
    if "test" not in present:
        ranks = allocate(counts, math.ceil(test_fraction * counts.sum()))
        plan.carve_test = _rank_bounds(split_hash, labels, ranks)
        in_test = plan.carve_test.below(split_hash, labels)
        carved["test"] = (sample_hash[in_test], labels[in_test])
        outside &= ~in_test
    if "validation" not in present:
        rest = np.bincount(labels[outside], minlength=num_labels)
        done = counts - rest
        ranks = done + allocate(rest, math.ceil(validation_fraction * rest.sum()))
        plan.carve_validation = _rank_bounds(split_hash, labels, ranks)
        in_validation = plan.carve_validation.below(split_hash, labels) & outside
        carved["validation"] = (sample_hash[in_validation], labels[in_validation])
        outside &= ~in_validation
    carved["train"] = (sample_hash[outside], labels[outside])
    for split in ("validation", "test"):
        if split in present:
            carved[split] = hashes[split][1:]
    for split in SPLITS:
        size = sample_size if split == "train" else eval_sample_size
        split_sample, split_labels = carved[split]
        split_counts = np.bincount(split_labels, minlength=num_labels)
        ranks = split_counts if size is None else allocate(split_counts, size)
        plan.keep[split] = _rank_bounds(split_sample, split_labels, ranks)
        plan.expected_rows[split] = float(ranks.sum())
    return plan
