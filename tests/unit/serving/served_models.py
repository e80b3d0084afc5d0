"""A classifier as the model server holds it (``LoadedModel``), without the registry: for the unit tests
that drive the server's app or batcher with a stand-in classifier."""

from __future__ import annotations

from typing import Any

from serving.model.loaded import LoadedModel


def served(classifier: Any, version: str) -> LoadedModel:
    """``classifier`` (a TF-IDF model or a wrapper around one) served as ``version`` of the default model."""
    return LoadedModel(
        version=version,
        name="sentiflow-sentiment",
        run_id=None,
        family="tfidf",
        label_names=list(classifier.label_names),
        metrics={},
        loaded_at="now",
        source="test",
        classifier=classifier,
    )
