"""Read a clean snapshot for training and refuse data that would train a wrong model silently."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentiflow.data.snapshot import Manifest, SnapshotError, read_snapshot
from sentiflow.names import DEFAULT_SEED, LABEL_COLUMN, SPLITS, TEXT_COLUMN
from sentiflow.storage import ObjectStore
from sentiflow.train.errors import TrainingError


@dataclass
class TrainingData:
    manifest: Manifest
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    @property
    def label_names(self) -> list[str]:
        return self.manifest.label_names


def validate_split(name: str, frame: pd.DataFrame, num_labels: int) -> pd.DataFrame:
    """Texts are strings and labels are int ids in ``[0, num_labels)``; anything else is an error."""
    missing = {TEXT_COLUMN, LABEL_COLUMN} - set(frame.columns)
    if missing:
        raise TrainingError(f"split {name!r} lacks column(s) {sorted(missing)}; it has {list(frame.columns)}")
    if frame.empty:
        raise TrainingError(f"split {name!r} is empty")
    labels = frame[LABEL_COLUMN]
    if labels.isna().any():
        raise TrainingError(f"split {name!r} has {int(labels.isna().sum())} rows without a label")
    if not pd.api.types.is_integer_dtype(labels):
        numeric = pd.to_numeric(labels, errors="coerce")
        if numeric.isna().any() or not np.all(numeric == np.round(numeric)):
            bad = labels[numeric.isna() | (numeric != np.round(numeric))].unique()[:5].tolist()
            raise TrainingError(f"split {name!r} has labels that are not integer ids, e.g. {bad}")
        labels = numeric.astype(int)
    out_of_range = labels[(labels < 0) | (labels >= num_labels)]
    if len(out_of_range):
        raise TrainingError(
            f"split {name!r} has label ids {sorted(out_of_range.unique().tolist())[:5]} outside "
            f"[0, {num_labels}) — the manifest names {num_labels} labels"
        )
    texts = frame[TEXT_COLUMN]
    if texts.isna().any():
        raise TrainingError(f"split {name!r} has {int(texts.isna().sum())} rows without text")
    return pd.DataFrame({TEXT_COLUMN: texts.astype(str).to_numpy(), LABEL_COLUMN: labels.to_numpy()})


def subset(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A reproducible random sample (the whole frame when ``size`` is None or larger)."""
    if size is None or size >= len(frame):
        return frame.reset_index(drop=True)
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def load_training_data(
    manifest_uri: str,
    *,
    train_subset_size: int | None = None,
    eval_subset_size: int | None = None,
    seed: int = DEFAULT_SEED,
    store: ObjectStore | None = None,
) -> TrainingData:
    store = store or ObjectStore()
    try:
        manifest, frames = read_snapshot(store, manifest_uri)
    except SnapshotError as exc:
        raise TrainingError(f"cannot read snapshot {manifest_uri}: {exc}") from exc
    missing = [s for s in SPLITS if s not in frames]
    if missing:
        raise TrainingError(
            f"snapshot {manifest_uri} lacks split(s) {missing}; training needs {list(SPLITS)}"
        )
    if manifest.num_labels < 2:
        raise TrainingError(f"snapshot {manifest_uri} names {manifest.num_labels} label(s); need at least 2")
    checked = {name: validate_split(name, frames[name], manifest.num_labels) for name in SPLITS}
    train = subset(checked["train"], train_subset_size, seed)
    if train[LABEL_COLUMN].nunique() < 2:
        raise TrainingError("the training split has a single class; a classifier cannot be trained on it")
    return TrainingData(
        manifest=manifest,
        train=train,
        validation=subset(checked["validation"], eval_subset_size, seed),
        test=checked["test"],
    )
