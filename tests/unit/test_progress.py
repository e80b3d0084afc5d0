"""Progress lines, the demo's reading of ``dag.test()`` output, the trainer callback, offline defaults.

The callback wired into a real fine-tune: tests/integration/train/test_train.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sentiflow.localstack import offline
from sentiflow.localstack.demo_monitor import DagTestMonitor, progress_text
from sentiflow.progress import PROGRESS_MARK, ProgressReporter, format_duration, progress_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (75, "1m15s"), (3725, "1h02m05s"), (-3, "0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_progress_line_has_fraction_rate_elapsed_and_eta() -> None:
    line = progress_line("train", 30, 120, 60.0, unit="samples", rate=8.0)
    assert line == f"{PROGRESS_MARK} train: 30/120 (25%) | 8.0 samples/s | elapsed 1m00s | ETA 3m00s"
    done = progress_line("clean", 3, 3, 2.0)
    assert "ETA" not in done and "(100%)" in done


def test_reporter_logs_at_most_every_interval_and_always_at_the_end() -> None:
    clock, lines = FakeClock(), []
    reporter = ProgressReporter("predict test", 1000, lines.append, every_s=5.0, unit="texts", clock=clock)
    for done in range(100, 1001, 100):
        clock.now += 2.0  # a chunk every 2 s
        reporter.update(done)
    # at 6 s (300), 12 s (600), 18 s (900) and the end (1000)
    assert [line.split(": ", 1)[1].split(" ", 1)[0] for line in lines] == [
        "300/1000",
        "600/1000",
        "900/1000",
        "1000/1000",
    ]
    assert "50.0 texts/s" in lines[0] and "ETA 14s" in lines[0]


def test_trainer_callback_reports_steps_samples_and_eta() -> None:
    from sentiflow.train.progress_callback import progress_callback

    lines: list[str] = []
    clock = FakeClock()
    callback = progress_callback(every_s=0.0, emit=lines.append, clock=clock)
    args = SimpleNamespace(train_batch_size=16, gradient_accumulation_steps=2, num_train_epochs=1)
    state = SimpleNamespace(max_steps=10, global_step=0, epoch=0.0)
    callback.on_train_begin(args, state, None)
    for step in (1, 2):
        clock.now += 4.0
        state.global_step = step
        callback.on_step_end(args, state, None)
    state.epoch = 1.0
    callback.on_epoch_end(args, state, None)
    assert lines[0] == f"{PROGRESS_MARK} train: 10 steps of 32 samples over 1 epoch(s)"
    assert lines[2] == f"{PROGRESS_MARK} train: 2/10 (20%) | 8.0 samples/s | elapsed 8s | ETA 32s"
    assert "epoch 1 done at step 2/10" in lines[3]


# Lines as Airflow 3's dag.test() prints them (trimmed from a real run).
TS = "2026-11-26T01:01:01.9Z [info     ] "
DAG_TEST = "[airflow.sdk.definitions.dag] loc=dag.py:1501"
RUN = [
    f"{TS}[DAG TEST] starting task_id=collect map_index=-1 {DAG_TEST}",
    f"{TS}[progress] collect: read train 25,000 rows in 2s [sentiflow.data.collect] loc=collect.py:300",
    f"{TS}Task instance state updated    [airflow.api] loc=t.py:485 new_state=success rows_affected=1",
    f"{TS}[DAG TEST] end task task_id=collect map_index=-1 {DAG_TEST}",
    f"{TS}[DAG TEST] starting task_id=train_local map_index=-1 {DAG_TEST}",
    f"{TS}2026-11-26 01:01:19,999 INFO sentiflow.train.progress_callback: [progress] train: 5/10 (50%) | "
    "8.0 samples/s | elapsed 10s | ETA 10s [sentiflow.pipeline] loc=tasks.py:230",
    "ValueError: training exploded",
    f"{TS}Task instance state updated    [airflow.api_fastapi] new_state=failed rows_affected=1",
    f"{TS}[DAG TEST] end task task_id=train_local map_index=-1 {DAG_TEST}",
]


def test_progress_text_drops_logger_and_key_values() -> None:
    assert progress_text(RUN[1]) == "collect: read train 25,000 rows in 2s"
    assert progress_text(RUN[5]) == "train: 5/10 (50%) | 8.0 samples/s | elapsed 10s | ETA 10s"
    assert progress_text(RUN[2]) is None


def test_monitor_prints_states_progress_and_a_failed_tasks_log(tmp_path: Path) -> None:
    printed: list[str] = []
    clock = FakeClock()
    monitor = DagTestMonitor(tmp_path, emit=printed.append, clock=clock)
    for line in RUN:
        clock.now += 1.0
        monitor.feed(line)
    monitor.close({"collect": "success", "train_local": "failed", "promote": "upstream_failed"})
    text = "\n".join(printed)
    assert "collect: running" in printed[0]
    assert "] collect: read train 25,000 rows in 2s" in text
    assert any(p.endswith("collect: success after 3s") for p in printed)
    assert "train_local: train: 5/10 (50%)" in text
    assert any(p.endswith("train_local: failed after 4s") for p in printed)
    assert "    ValueError: training exploded" in printed  # the tail of the failed task's log
    assert f"---- full log: {tmp_path / 'train_local.log'}" in printed
    assert printed[-1].endswith("promote: upstream_failed")  # never ran: reported at the end
    assert "training exploded" in (tmp_path / "train_local.log").read_text()
    assert "training exploded" not in (tmp_path / "collect.log").read_text()
    assert len((tmp_path / "dag-test.log").read_text().splitlines()) == len(RUN)
    assert monitor.failed_logs() == {"train_local": tmp_path / "train_local.log"}


def test_offline_env_points_the_defaults_at_the_copies(imdb_dir: Path, offline_model: Path) -> None:
    env = offline.offline_env(offline=True)
    assert env["SENTIFLOW_DEFAULT_DATASET"] == str(imdb_dir)
    assert env["SENTIFLOW_DEFAULT_MODEL_NAME"] == str(offline_model)
    assert env["HF_HUB_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == "1"
    assert offline.offline_env(offline=False) == {}
    overrides = offline.offline_overrides(offline=True)
    assert overrides == {"dataset": str(imdb_dir), "model_name": str(offline_model)}


def test_airflow_env_has_the_venv_on_path_and_the_schedule_off_by_default(tmp_path: Path) -> None:
    import sys

    from sentiflow.localstack.airflow_standalone import airflow_env
    from sentiflow.localstack.stack import StackSettings

    env = airflow_env(StackSettings(home=tmp_path), 8123, offline={})
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert (Path(env["PATH"].split(":")[0]) / "airflow").exists()
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["SENTIFLOW_PIPELINE_TRAIN_BACKEND"] == "local"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    scheduled = airflow_env(StackSettings(home=tmp_path), 8123, offline={"X": "1"}, schedule=True)
    assert scheduled["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True" and scheduled["X"] == "1"


def test_prediction_over_a_large_split_runs_in_chunks_and_reports_progress(caplog) -> None:
    import logging

    import numpy as np

    from sentiflow.train import runner

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def predict_proba(self, texts: list[str]) -> np.ndarray:
            self.calls.append(len(texts))
            return np.array([[0.25, 0.75] if t.endswith("1") else [0.9, 0.1] for t in texts])

    from datasets import Dataset

    model = Recorder()
    texts = [f"text {i % 2}" for i in range(600)]
    split = Dataset.from_dict({"text": texts, "label": [0] * 600})  # a split of TrainingData
    with caplog.at_level(logging.INFO, logger="sentiflow.train.runner"):
        probs = runner._predict_progress(model, split, "test")
    assert model.calls == [256, 256, 88]
    assert probs.shape == (600, 2) and probs[1].tolist() == [0.25, 0.75] and probs[598].tolist() == [0.9, 0.1]
    assert f"{PROGRESS_MARK} predict test: 600/600 (100%)" in caplog.text
    small = Recorder()
    runner._predict_progress(small, split.select(range(100)), "validation")
    assert small.calls == [100]  # one call, as before, when it is quick anyway
