"""The production feedback loop: alerts on wrong predictions, feedback-enriched training data, drift.

Submodules stay import-light (no Flask, no Airflow, no MLflow at import time) so the model server and DAG
files can import them cheaply.
"""
