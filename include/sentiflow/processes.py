"""Whether a process we know by PID still runs, and waiting for it to go.

Shared by the local stack (its PID files) and the test model server (a simulated crash): one definition of
"alive", where a zombie child counts as gone. psutil reads the process table, so no code here parses
``/proc``. (The model server itself probes no PIDs: its replicas and workers report to the shared database.)
"""

from __future__ import annotations

import os
import time

import psutil


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # exited, not yet reaped: gone
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # alive, owned by someone else
        return True


def reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our exited child (no zombie left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid: int, timeout_s: float, poll_s: float = 0.1) -> bool:
    """Wait until ``pid`` has exited (reaping it when it is our child); False if it still runs."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        reap(pid)
        if time.monotonic() >= deadline:
            return not pid_alive(pid)
        time.sleep(poll_s)
    reap(pid)
    return True
