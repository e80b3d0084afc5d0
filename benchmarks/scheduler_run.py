"""Record one ``sentiment_pipeline`` run under Airflow's real scheduler (LocalExecutor), triggered by REST.

Runs ``tests/e2e/airflow_local/test_airflow_scheduler.py`` (which starts the stack on free ports, then
``make airflow``'s ``sentiflow.localstack.airflow_standalone up`` on it: a model server and ``airflow
standalone``, and
triggers a small baseline-only run) with ``SENTIFLOW_SCHEDULER_RUN_JSON`` set, and the same parameters
under ``dag.test()`` (``benchmarks/_dag_test_run.py``, ``SENTIFLOW_DAG_TEST_RUN_JSON``), then writes
``results/scheduler_run.json`` and the ``## scheduler_run`` section of RESULTS.md: the run's state, wall
seconds from trigger to end, each
task's duration, the executor, beside the ``dag.test()`` times (this conf, and ``make demo``'s).

    .venv/bin/python benchmarks/scheduler_run.py [--note "other jobs were running"]
    (or ``--from-json run.json --exit-code N`` to record a run the test already wrote)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, RESULTS_DIR, record

REPO = BENCH_DIR.parent
TESTS = ("tests/e2e/airflow_local/test_airflow_scheduler.py", "benchmarks/_dag_test_run.py")


def run_tests(scheduler_json: Path, dag_test_json: Path) -> int:
    """The scheduler run, then the same conf under ``dag.test()``, in one pytest session (one stack)."""
    env = {
        **os.environ,
        "SENTIFLOW_SCHEDULER_RUN_JSON": str(scheduler_json),
        "SENTIFLOW_DAG_TEST_RUN_JSON": str(dag_test_json),
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", *TESTS]
    return subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode


def markdown(result: dict, note: str, dag_test: dict | None) -> str:
    demo = {}
    demo_file = RESULTS_DIR / "demo.json"
    if demo_file.exists():
        demo = json.loads(demo_file.read_text())
    rows = "".join(
        f"| {task} | {t['state']} | {t['duration_s']:.1f} |\n"
        for task, t in sorted(result["tasks"].items(), key=lambda kv: -kv[1]["duration_s"])
    )
    conf = result["conf"]
    lines = [
        f"`sentiment_pipeline` under the real scheduler ({result['executor']}; `make airflow`'s "
        "`airflow standalone`: api-server, dag-processor, scheduler and triggerer as separate processes, "
        "SQLite), triggered through the REST API: "
        f"**{result['state']}**, **{result['wall_s_trigger_to_end']:.0f} s** from trigger to the run's end "
        f"(pytest exit code {result['pytest_exit_code']}). Parameters: TF-IDF baseline only "
        f"(`train_transformer` off), {conf['sample_size']} train / {conf['eval_sample_size']} validation and "
        "test reviews, forced promotion, then deploy to a gunicorn model server and the inference check.",
        "",
        "Beside it, `dag.test()` (one process, no scheduler: "
        "`tests/e2e/test_demo_progress.py`, `make demo`'s code path): "
        + (
            f"the same parameters took **{dag_test['wall_s']:.0f} s** ({dag_test['state']}). "
            if dag_test
            else "not measured for these parameters. "
        )
        + (
            f"`make demo` itself (MiniLM 1 epoch on 2,000 reviews plus the baseline) ran the pipeline in "
            f"{demo['pipeline_wall_s']:.0f} s (results/demo.json). "
            if demo
            else ""
        )
        + "Under the scheduler each task is a fresh process that imports Airflow and sentiflow and parses "
        "the DAG file, which the task durations below include.",
        "",
        f"Machine busy: {note}" if note else "",
        "",
        "| task | state | duration (s) |\n| --- | --- | ---: |\n" + rows,
    ]
    return "\n".join(line for line in lines if line is not None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--note", default="")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="record a run the test already wrote (SENTIFLOW_SCHEDULER_RUN_JSON) instead of running it",
    )
    parser.add_argument(
        "--dag-test-json", type=Path, default=None, help="with --from-json: the dag.test() run's JSON"
    )
    parser.add_argument("--exit-code", type=int, default=0, help="with --from-json: that pytest's exit code")
    args = parser.parse_args()
    dag_test = None
    if args.from_json:
        result, code = json.loads(args.from_json.read_text()), args.exit_code
        if args.dag_test_json:
            dag_test = json.loads(args.dag_test_json.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            output, dag_test_output = Path(tmp) / "run.json", Path(tmp) / "dag_test.json"
            code = run_tests(output, dag_test_output)
            if not output.exists():
                print(f"the test did not finish a run (exit code {code})", file=sys.stderr)
                return 1
            result = json.loads(output.read_text())
            if dag_test_output.exists():
                dag_test = json.loads(dag_test_output.read_text())
    result["pytest_exit_code"] = code
    result["dag_test"] = dag_test
    record(
        "scheduler_run",
        result,
        markdown(result, args.note, dag_test),
        command=".venv/bin/python benchmarks/scheduler_run.py",
    )
    print(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
