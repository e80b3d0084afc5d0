"""The Airflow UI's extra links: URL building and reading a task's outputs.

The plugin attaching them to the right tasks (Airflow's plugin manager, the DAGs parsed):
tests/integration/orchestration/test_plugin_links.py.
"""

from __future__ import annotations

from sentiflow.orchestration import links


def test_urls() -> None:
    assert links.mlflow_run_url("http://m:5000/", "abc123") == "http://m:5000/#/runs/abc123"
    assert (
        links.model_version_url("http://m:5000", "sentiflow sentiment", "7")
        == "http://m:5000/#/models/sentiflow%20sentiment/versions/7"
    )
    assert links.server_page_url("http://s:8000/") == "http://s:8000/ui/"
    assert links.report_summary_uri("s3://b/reports/r/inference_check") == (
        "s3://b/reports/r/inference_check/summary.json"
    )
    assert links.report_summary_uri("s3://b/x/summary.json") == "s3://b/x/summary.json"


def test_readers_are_tolerant_of_missing_or_odd_values() -> None:
    assert links.xcom_field({"run_id": "r1", "model_version": "3"}, "run_id") == "r1"
    assert links.xcom_field(None, "run_id") is None
    assert links.xcom_field({"model_version": "3"}, "run_id") is None
    assert links.xcom_field("not a dict", "run_id") is None
    assert links.xcom_field({"candidate_version": 4, "promote": False}, "candidate_version") == "4"
    assert links.xcom_field({"promote": False}, "candidate_version") is None
    assert links.xcom_field({"version": "5"}, "version") == "5"
    assert links.xcom_field({"report_uri": ""}, "report_uri") is None
    assert links.is_training_task("train_grid_local") and links.is_training_task("train_baseline")
    assert not links.is_training_task("training_data")
