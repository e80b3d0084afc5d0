"""The training step: ``run_training`` (transformer) and ``run_baseline`` (TF-IDF) → ``TrainResult``.

Imports here are light (pydantic only); torch, transformers and mlflow load when a run starts, so the DAG
can import this package at parse time.
"""

from sentiflow.train.errors import TrainingError
from sentiflow.train.params import BaselineParams, TrainParams
from sentiflow.train.runner import TrainResult, run_baseline, run_training

__all__ = ["BaselineParams", "TrainParams", "TrainResult", "TrainingError", "run_baseline", "run_training"]
