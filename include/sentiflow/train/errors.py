"""One exception type for every way a training run can fail, so the CLI maps all of them to exit code 1."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A training run failed; the message says why and what to change."""
