"""The training step every family shares: the snapshot's splits, metrics, artifacts, MLflow tracking and the
command line; each family's own fit lives in its folder (``sentiflow.families``).

Imports here are light; torch, transformers and mlflow load when a run starts, so the DAG can import this
package at parse time.
"""


class TrainingError(RuntimeError):
    """A training run failed; the message says why and what to change (the CLI exits 1 on any of them)."""
