"""Whether a process we know by PID still runs, and waiting for its whole process group to go.

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


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def wait_group_gone(pgid: int, timeout_s: float, poll_s: float = 0.1) -> bool:
    """Wait until every process of group ``pgid`` has exited (the leader reaped when it is our child).

    Waiting for the leader alone is not enough: gunicorn's workers share the listening socket, and one that
    is still exiting keeps the port taken for whoever starts on it next.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        reap(pgid)
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
