"""Errors of the data steps, in their own module so the collect helpers (labels, file layouts) share them."""

from __future__ import annotations


class CollectError(ValueError):
    """The source cannot become a labelled text snapshot; the message says why and what was seen."""
