"""The pipeline's logic behind the Airflow DAGs: selection and the promotion gate, registry aliases,
deploy and the inference check, the trainer pod, and Airflow-connection → settings helpers.

Everything here except ``tasks`` is Airflow-free and importable in tests; ``tasks`` holds the task
callables the two DAGs share (so the sweep reuses the pipeline's tail instead of copying it).
"""
