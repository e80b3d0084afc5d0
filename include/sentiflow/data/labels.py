"""Label values of any encoding → ids 0..K-1 and their names, one mapping for every split of a dataset.

Sources spell labels as strings (``"positive"``, ``"pos"``, ``"joy"``), as ids from 0 (the Hub's
ClassLabel), as ids with negatives (``-1, 0, 1``), or as ids that start at 1 (ratings). The mapping is built
from the union of all splits, so a split cannot shift the ids of another; ``label_names`` (a list in
ascending id order, or an ``{id: name}`` object) names ids the data does not name itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sentiflow.data.sources import CollectError

SENTIMENT_ORDER = ("negative", "neutral", "positive")
#: Short sentiment names (the Hub's imdb says neg/pos) become the full words the rest of the product uses.
SENTIMENT_ABBREVIATIONS = {"neg": "negative", "pos": "positive", "neu": "neutral"}


def _default_names(count: int) -> list[str] | None:
    if count == 2:
        return ["negative", "positive"]
    if count == 3:
        return list(SENTIMENT_ORDER)
    return None


def expand_abbreviations(names: Sequence[str]) -> list[str]:
    lowered = [str(n).lower() for n in names]
    if set(lowered) <= set(SENTIMENT_ABBREVIATIONS):
        return [SENTIMENT_ABBREVIATIONS[n] for n in lowered]
    return [str(n) for n in names]


def _normalise(values: pd.Series) -> pd.Series:
    """Booleans and integral floats become integers; everything else is left for the checks below."""
    non_null = values.dropna()
    if non_null.empty:
        return values
    if pd.api.types.is_bool_dtype(non_null):
        return values.astype("Int64")
    if pd.api.types.is_float_dtype(non_null) and np.all(np.mod(non_null.to_numpy(), 1) == 0):
        return values.astype("Int64")
    return values


def _names_for_ids(ids: list[int], known: Sequence[str] | Mapping[Any, str] | None, column: str) -> list[str]:
    """One name per id of ``ids`` (sorted), from ``known`` or by convention."""
    if isinstance(known, Mapping):
        by_id: dict[int, str] = {}
        for key, name in known.items():
            try:
                by_id[int(key)] = str(name)
            except (TypeError, ValueError) as exc:
                raise CollectError(f"label_names key {key!r} is not an integer id") from exc
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise CollectError(
                f"label column {column!r} has id(s) {missing} that label_names {dict(known)} does not name"
            )
        return [by_id[i] for i in ids]
    if known:
        known = expand_abbreviations(list(known))
        if len(known) == len(ids):
            return list(known)
        raise CollectError(
            f"label column {column!r} has {len(ids)} distinct ids {ids[:10]} but {len(known)} label names "
            f"{list(known)[:10]}; give one name per id, in ascending id order (or an {{id: name}} object)"
        )
    return _default_names(len(ids)) or [str(i) for i in ids]


def label_encoding(
    splits: Iterable[pd.Series], column: str, known: Sequence[str] | Mapping[Any, str] | None = None
) -> tuple[dict[Any, int], list[str]]:
    """The mapping raw value → id (0..K-1) and the K names, over all ``splits`` together.

    - strings: sentiment words (and neg/neu/pos) in sentiment order, anything else alphabetically;
    - integers 0..K-1 with names for each (a Hub ClassLabel list): kept as they are, even if a class has
      no rows;
    - any other integers (``-1, 0, 1``; ``1..5``): ascending order → 0..K-1; named by ``known``, else
      negative/positive (2) or negative/neutral/positive (3), else by the original id.
    """
    values = [_normalise(s) for s in splits]
    non_null = pd.concat([v.dropna() for v in values], ignore_index=True) if values else pd.Series([])
    if non_null.empty:
        raise CollectError(f"label column {column!r} is empty")
    if pd.api.types.is_integer_dtype(non_null) or (
        non_null.map(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)).all()
    ):
        ids = sorted({int(v) for v in non_null})
        if (
            known is not None
            and not isinstance(known, Mapping)
            and ids[0] >= 0
            and ids[-1] < len(known)
            and len(known) != len(ids)
        ):
            names = expand_abbreviations(list(known))  # ClassLabel names: ids are positions
            return {i: i for i in range(len(names))}, names
        if known is None and ids == list(range(len(ids))):
            names = _default_names(len(ids)) or [str(i) for i in ids]
            return {i: i for i in ids}, names
        names = _names_for_ids(ids, known, column)
        return {raw: position for position, raw in enumerate(ids)}, names
    if non_null.map(lambda v: isinstance(v, str)).all():
        distinct = sorted(set(non_null))
        lowered = expand_abbreviations([d.lower() for d in distinct])
        if set(lowered) <= set(SENTIMENT_ORDER):
            names = [n for n in SENTIMENT_ORDER if n in lowered]
            return {d: names.index(full) for d, full in zip(distinct, lowered, strict=True)}, names
        return {d: i for i, d in enumerate(distinct)}, distinct
    example = non_null.iloc[0]
    raise CollectError(
        f"label column {column!r} has values that are neither integers nor strings "
        f"(dtype {non_null.dtype}, e.g. {example!r} of type {type(example).__name__})"
    )


def apply_encoding(values: pd.Series, mapping: Mapping[Any, int]) -> pd.Series:
    """Raw values → ids; missing values stay missing (the caller drops and counts them)."""
    normalised = _normalise(values)
    return normalised.map(lambda v: mapping.get(int(v) if isinstance(v, (np.integer,)) else v)).astype(
        "Int64"
    )


def encode_arrow(values: pa.Array | pa.ChunkedArray, mapping: Mapping[Any, int]) -> pa.Array:
    """``apply_encoding`` for an Arrow column, vectorized (collect encodes millions of rows per split).

    Booleans and integral floats are ids (as ``_normalise``); NaN and unknown values become null.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
    keys = list(mapping)
    ids = pa.array([int(mapping[k]) for k in keys], pa.int64())
    if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return pa.nulls(len(values), pa.int64())
        value_set = pa.array([int(k) for k in keys], pa.int64())
        values = pc.cast(values, pa.int64())
    else:
        value_set = pa.array([str(k) for k in keys], pa.string())
        values = pc.cast(values, pa.string())
    return pc.take(ids, pc.index_in(values, value_set=value_set))


def encode_labels(
    values: pd.Series, column: str, known_names: Sequence[str] | Mapping[Any, str] | None = None
) -> tuple[pd.Series, list[str]]:
    """One split's labels → ids and names (``label_encoding`` over that split alone)."""
    mapping, names = label_encoding([values], column, known_names)
    return apply_encoding(values, mapping), names


def check_class_counts(counts: Mapping[str, Mapping[int, int]], names: Sequence[str]) -> None:
    """Every split holds at least two classes and every class the others hold, counted as rows per label
    id per split (what a streaming writer counted); else a clear error."""
    present = {split: {int(i) for i, n in by_id.items() if n > 0} for split, by_id in counts.items()}
    for split, ids in present.items():
        if len(ids) < 2:
            only = names[next(iter(ids))] if ids else "none"
            raise CollectError(
                f"the {split} split has a single class ({only!r}); a classifier needs at least two"
            )
    everywhere = set().union(*present.values()) if present else set()
    for split, ids in present.items():
        missing = sorted(everywhere - ids)
        if missing:
            held = {int(i): int(n) for i, n in sorted(counts[split].items()) if n > 0}
            raise CollectError(
                f"the {split} split has no rows of class(es) {[names[i] for i in missing]} (it has "
                f"{held} by id of {list(names)}): "
                "its metrics would ignore those classes. Use a larger sample or fix the source"
            )
