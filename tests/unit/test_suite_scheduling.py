"""``make test``'s two workers: a file is one unit of work, and the files that read one shared run are one."""

from __future__ import annotations

from tests.conftest import misplaced_shared_run_readers, work_unit


def test_files_reading_the_golden_run_are_one_unit_and_other_files_their_own() -> None:
    golden = {
        work_unit("tests/e2e/test_pipeline_e2e.py::test_a"),
        work_unit("tests/e2e/test_demo_progress.py::b"),
    }
    assert golden == {"golden"}
    assert work_unit("tests/e2e/airflow_local/test_airflow_rest.py::t") == work_unit(
        "tests/e2e/airflow_local/test_make_airflow.py::t"
    )
    assert (
        work_unit("tests/integration/serving/test_replicas.py::t[x]")
        == "tests/integration/serving/test_replicas.py"
    )


def test_a_file_reading_a_shared_run_outside_its_unit_is_named() -> None:
    readers = [
        ("tests/e2e/test_pipeline_e2e.py::test_a", ["golden", "tmp_path"]),
        ("tests/e2e/airflow_local/test_airflow_rest.py::t", ["local_airflow"]),
        ("tests/e2e/test_new_reader.py::t", ["golden"]),
        ("tests/integration/serving/test_server.py::t", ["stack"]),
    ]
    (misplaced,) = misplaced_shared_run_readers(readers)
    assert misplaced.startswith("tests/e2e/test_new_reader.py::t reads 'golden'")
