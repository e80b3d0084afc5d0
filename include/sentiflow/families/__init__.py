"""Model families, one module each: every module here defines ``FAMILY = ModelFamily(...)``.

``sentiflow.families.catalogue`` finds them by name; see ``docs/DEVELOPING.md`` ("Adding a model family").
"""
