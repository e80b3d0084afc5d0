"""Whether a process we know by PID still runs, and waiting for it to go.

Shared by the local stack (its PID files) and the dev model server (a simulated crash): one definition of
"alive", where a zombie child counts as gone. (The model server itself probes no PIDs: its replicas and
workers report to the shared database, issue 13.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name: state, ppid, pgrp, ... utime (11), stime (12).

    The name is cut at the last ``)``, since a name may itself hold spaces and parentheses. None when the
    process is gone (or there is no ``/proc``).
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    fields = stat_fields(pid)
    return fields is None or fields[0] != "Z"  # a zombie (exited, not yet reaped) counts as gone


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
