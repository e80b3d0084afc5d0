"""The promotion gate: which challenger is best, and whether it may replace the champion.

Pure decision rules (``selection``, ``comparison``) plus their MLflow/S3 side (``gating``). Nothing here
imports Airflow; the orchestration layer calls it, the web page reads its tags back through ``registry``.
"""
