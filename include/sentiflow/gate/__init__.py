"""The promotion gate: which challenger is best, and whether it may replace the champion.

``policy`` (what must be shown, a typed model the trigger form is generated from), ``evidence`` (logged values
or both models on the same rows), ``judge`` (the one rule set, pure; its ``Decision`` is the ``gate.*`` tags
and the XCom), ``selection`` (the best candidate), ``comparison`` (paired intervals) and ``scoring`` (the
MLflow/S3 side). Nothing here imports Airflow; the orchestration layer calls it, the web page reads its tags
back through ``registry``.
"""
