"""The majority-class classifier and its training: class frequencies of the train split, for every text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentiflow.modeling.base import TextClassifier
from sentiflow.names import FIT_TIME_S
from sentiflow.train.data import label_ids
from sentiflow.train.runner import TrainResult, finish, load_tagged
from sentiflow.train.tracking import training_run

from . import NAME, MajorityParams

FILE = "frequencies.json"


class MajorityClassifier(TextClassifier):
    family = NAME

    def __init__(self, frequencies: Sequence[float], label_names: list[str]) -> None:
        self.frequencies = np.asarray(frequencies, dtype=np.float64)
        self.label_names = list(label_names)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(self.frequencies, (len(texts), 1))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / FILE).write_text(json.dumps(self.frequencies.tolist()))

    @classmethod
    def load(cls, directory: Path, label_names: list[str]) -> MajorityClassifier:
        return cls(json.loads((directory / FILE).read_text()), label_names)


def run_majority(manifest_uri: str, params: MajorityParams, **kwargs: Any) -> TrainResult:
    with training_run(NAME, NAME, params.model_dump(), manifest_uri) as run:
        data = load_tagged(manifest_uri, params)
        counts = np.bincount(label_ids(data.train), minlength=len(data.label_names)) + params.smoothing
        classifier = MajorityClassifier(counts / counts.sum(), data.label_names)
        return finish(run, classifier, data, manifest_uri, {FIT_TIME_S: 0.0}, history=None, **kwargs)
