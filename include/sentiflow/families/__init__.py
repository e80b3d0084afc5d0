"""Model families, one folder each: every folder's ``__init__`` defines ``FAMILY = ModelFamily(...)``.

A family's folder holds its model (``model.py``: the serving runtime), its parameters and trigger-form fields
(``params.py``) and its training (``training.py``); ``sentiflow.families.catalogue`` finds them by name. See
``docs/DEVELOPING.md`` ("Adding a model family").
"""
