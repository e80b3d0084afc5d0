"""``sentiflow.localstack.supervisor``'s primitives: a free port (its gRPC neighbour free too, both outside
the kernel's ephemeral range) and one meaning of "alive" for PID files and crash simulation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from sentiflow.localstack.supervisor import (
    GRPC_OFFSET,
    HOST,
    ephemeral_range,
    free_port,
    group_members,
    pid_alive,
    wait_group_gone,
)


def test_a_free_port_and_its_grpc_neighbour_are_free_and_never_ones_the_kernel_hands_out() -> None:
    low, high = ephemeral_range()
    ports = {free_port() for _ in range(50)}
    handed_out = range(low, high + 1)
    assert not any(p in handed_out or p + GRPC_OFFSET in handed_out for p in ports), sorted(ports)
    for port in ports:
        for candidate in (port, port + GRPC_OFFSET):
            with socket.socket() as sock:
                sock.bind((HOST, candidate))  # raises if taken


def test_an_exited_unreaped_leader_is_not_alive_and_waiting_reaps_it() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert Path(f"/proc/{proc.pid}").exists()  # a zombie: os.kill(pid, 0) alone would call it alive
    assert not pid_alive(proc.pid)
    assert wait_group_gone(proc.pid, 5)
    assert not Path(f"/proc/{proc.pid}").exists()  # reaped


def test_a_group_is_gone_only_when_its_last_process_is() -> None:
    # a leader with a child in its group, like gunicorn's master and its workers
    code = "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(group_members(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group_members(leader.pid)) == 2
        leader.kill()  # the leader alone: its child still runs (and would still hold a port)
        started = time.monotonic()
        assert not wait_group_gone(leader.pid, 0.3)
        assert time.monotonic() - started < 5
        os.killpg(leader.pid, signal.SIGKILL)
        assert wait_group_gone(leader.pid, 10)
        assert group_members(leader.pid) == []
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        leader.wait()
