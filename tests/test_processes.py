"""``sentiflow.processes``: one meaning of "alive" for PID files and crash simulation."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil

from sentiflow.processes import pid_alive, wait_gone


def test_an_exited_unreaped_child_is_not_alive_and_wait_gone_reaps_it() -> None:
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert Path(f"/proc/{proc.pid}").exists()  # a zombie: os.kill(pid, 0) alone would call it alive
    assert not pid_alive(proc.pid)
    assert wait_gone(proc.pid, 5)
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped


def test_wait_gone_says_false_while_the_process_runs() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_alive(proc.pid)
        started = time.monotonic()
        assert not wait_gone(proc.pid, 0.3)
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()
