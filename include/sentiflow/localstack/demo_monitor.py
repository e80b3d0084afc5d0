"""What ``make demo`` prints while the DAG runs: task state changes, progress lines, a failed task's log.

``dag.test()`` runs the tasks one after another in one process and writes every task's log to that
process's output (no log files). ``DagTestMonitor`` reads that output line by line: it splits it into one
log file per task (under the demo's log folder), prints each task's start and end with the elapsed time,
echoes the ``[progress]`` lines (training steps, collect/clean, prediction), and for a failed task prints the
tail of its log and the path of the whole log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sentiflow.progress import PROGRESS_MARK, format_duration

START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
NEW_STATE = re.compile(r"\bnew_state=(?P<state>[a-z_]+)")
#: structlog's console line: "<ts> [level] <event>  [logger] key=value ..."; we keep the event.
TRAILER = re.compile(r"\s+\[[\w.]+\](?:\s+\w+=\S*)*\s*$")
FAILED_STATES = ("failed", "upstream_failed")
TAIL_LINES = 40


def task_label(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def progress_text(line: str) -> str | None:
    """The progress message in a log line (logger name and key=values removed), or None."""
    at = line.find(PROGRESS_MARK)
    if at < 0:
        return None
    return TRAILER.sub("", line[at + len(PROGRESS_MARK) :]).strip()


@dataclass
class TaskLog:
    label: str
    path: Path
    started: float
    state: str | None = None
    lines: list[str] = field(default_factory=list)


class DagTestMonitor:
    """Feed it the ``dag.test()`` process's output; it prints what a person needs and keeps the logs."""

    def __init__(
        self,
        log_dir: Path,
        *,
        emit: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.full_log = log_dir / "dag-test.log"
        self.emit, self.clock = emit, clock
        self.started = clock()
        self.current: TaskLog | None = None
        self.finished: dict[str, TaskLog] = {}
        self._full: IO[str] = self.full_log.open("w")

    def _stamp(self) -> str:
        return f"[{format_duration(self.clock() - self.started):>7}]"

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        self._full.write(line + "\n")
        start = START.search(line)
        if start:
            self._close(None)
            label = task_label(start["task"], int(start["index"]))
            self.current = TaskLog(label, self.log_dir / f"{label}.log", self.clock())
            self.emit(f"{self._stamp()} {label}: running")
        if self.current is not None:
            self.current.lines.append(line)
            state = NEW_STATE.search(line)
            if state and "Task instance state updated" in line:
                self.current.state = state["state"]
        text = progress_text(line)
        if text:
            who = self.current.label if self.current else "pipeline"
            text = text.removeprefix(f"{who}: ")  # "clean: clean: split 1/3" reads "clean: split 1/3"
            self.emit(f"{self._stamp()} {who}: {text}")
        if END.search(line):
            self._close(self.current.state if self.current else None)

    def _close(self, state: str | None) -> None:
        task = self.current
        if task is None:
            return
        self.current = None
        task.state = state or task.state or "finished"
        task.path.write_text("\n".join(task.lines) + "\n")
        took = format_duration(self.clock() - task.started)
        self.emit(f"{self._stamp()} {task.label}: {task.state} after {took}")
        if task.state in FAILED_STATES:
            self.emit(f"---- last {TAIL_LINES} lines of {task.label}'s log ----")
            for tail_line in task.lines[-TAIL_LINES:]:
                self.emit(f"    {tail_line}")
            self.emit(f"---- full log: {task.path}")
        self.finished[task.label] = task

    def close(self, final_states: dict[str, str] | None = None) -> None:
        """End of output: close a task cut short, report tasks that never ran (skipped, upstream failed)."""
        self._close(None)
        for task_id, state in sorted((final_states or {}).items()):
            if task_id not in self.finished and state not in ("success", "failed"):
                self.emit(f"{self._stamp()} {task_id}: {state}")
        self._full.close()

    def failed_logs(self) -> dict[str, Path]:
        return {label: t.path for label, t in self.finished.items() if t.state in FAILED_STATES}
