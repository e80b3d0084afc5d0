"""Hashes of texts: deterministic sampling and split carving, and deduplication in bounded memory.

Why hashes: a decision that depends only on the text (never on a row's position or on the rest of the
split) is the same whatever the batch, part or file layout, needs no memory of the split, and sends every
copy of one text the same way, so duplicates never straddle two splits.

- ``text_digests(texts, key)``: BLAKE2b of each text's UTF-8 bytes, keyed by the seed; 16 bytes per row,
  read as two unsigned 64-bit integers: ``split_hash`` (which split) and ``sample_hash`` (kept or not),
  independent of each other. BLAKE2b is a published standard, so a sample is reproducible on any machine
  and any library version.
- A row is kept with fraction ``f`` when ``sample_hash < f × 2**64``.
- ``DigestSet``: a set of 8-byte digests in sorted numpy arrays (a log-structured merge of levels): 8 bytes
  per distinct row, up to 16 bytes per row for a moment while two levels merge.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TWO_64 = 2**64


class TextHashes(NamedTuple):
    split_hash: np.ndarray  # uint64 per row: which split
    sample_hash: np.ndarray  # uint64 per row: kept by sampling or not


def _string_buffers(texts: pa.Array | pa.ChunkedArray) -> tuple[memoryview, list[int]]:
    """The UTF-8 bytes and row offsets of a (non-null) string array, without one Python str per row
    and without copying the text (string and large_string differ only in the offsets' width)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = pc.cast(texts, pa.large_string())
    _, offsets_buffer, data_buffer = texts.buffers()
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[texts.offset : texts.offset + len(texts) + 1]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    return data, offsets.tolist()


def digests(texts: pa.Array | pa.ChunkedArray, *, size: int = 8, key: bytes = b"") -> np.ndarray:
    """BLAKE2b digests of each text's UTF-8 bytes as big-endian uint64 rows: shape (n, size // 8)."""
    data, offsets = _string_buffers(texts)
    blake2b = hashlib.blake2b
    joined = b"".join(
        blake2b(data[start:end], digest_size=size, key=key).digest()
        for start, end in itertools.pairwise(offsets)
    )
    return np.frombuffer(joined, dtype=">u8").astype(np.uint64).reshape(-1, size // 8)


def seed_key(seed: int) -> bytes:
    """The BLAKE2b key for ``seed``: another seed draws another (equally deterministic) sample."""
    return int(seed).to_bytes(8, "little", signed=True)


def text_hashes(texts: pa.Array | pa.ChunkedArray, seed: int) -> TextHashes:
    """Two independent uint64 hashes per text, keyed by ``seed``."""
    both = digests(texts, size=16, key=seed_key(seed))
    return TextHashes(split_hash=both[:, 0], sample_hash=both[:, 1])


def threshold(fraction: float) -> int:
    """Hashes below this are kept at ``fraction`` (1.0 keeps every row, 0 none)."""
    return min(TWO_64, max(0, round(fraction * TWO_64)))


def below(hashes: np.ndarray, bound: int) -> np.ndarray:
    """``hashes < bound`` for a bound in [0, 2**64] (2**64 itself does not fit a uint64)."""
    if bound >= TWO_64:
        return np.ones(len(hashes), dtype=bool)
    return hashes < np.uint64(bound)


class DigestSet:
    """Distinct 8-byte digests seen so far, for deduplication across a split of any length.

    Levels of sorted uint64 arrays, merged like a binary counter (a level merges into the one before it
    while that one is at most twice as long), so a lookup is a binary search in O(log n) levels and
    each digest is re-sorted O(log n) times. Memory: 8 bytes per distinct digest (16 during a merge).
    With 8-byte digests two different texts collide with probability about n²/2**65 (≈ 7e-7 at 5
    million distinct rows, ≈ 3e-4 at 100 million): a collision drops one row as a duplicate.
    """

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels)

    @property
    def nbytes(self) -> int:
        return sum(level.nbytes for level in self._levels)

    def contains(self, values: np.ndarray) -> np.ndarray:
        """A boolean per value: already in the set."""
        order = np.argsort(values, kind="stable")
        found = np.empty(len(values), dtype=bool)
        found[order] = self._contains_sorted(values[order])
        return found

    def _contains_sorted(self, values: np.ndarray) -> np.ndarray:
        # Sorted queries make the binary searches walk each level in order: several times faster.
        found = np.zeros(len(values), dtype=bool)
        for level in self._levels:
            positions = np.minimum(np.searchsorted(level, values), len(level) - 1)
            found |= level[positions] == values
        return found

    def add(self, values: np.ndarray) -> None:
        """Insert values (assumed not yet in the set)."""
        if len(values) == 0:
            return
        self._levels.append(np.sort(np.asarray(values, dtype=np.uint64)))
        while len(self._levels) > 1 and len(self._levels[-2]) <= 2 * len(self._levels[-1]):
            newest = self._levels.pop()
            merged = np.concatenate([self._levels.pop(), newest])
            merged.sort(kind="stable")
            self._levels.append(merged)

    def first_seen(self, values: np.ndarray) -> np.ndarray:
        """A boolean per value: True where it occurs for the first time (in the set and in ``values``
        before it); those are then added. The deduplication step: keep rows where this is True."""
        keep = np.zeros(len(values), dtype=bool)
        if len(values):
            distinct, first = np.unique(values, return_index=True)
            new = ~self._contains_sorted(distinct)
            keep[first[new]] = True
            self.add(distinct[new])
        return keep
