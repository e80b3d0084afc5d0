"""TCP ports on 127.0.0.1: a free one for a service we are about to start, and whether one is taken.

The local stack, the tests' servers and the benchmarks all start services on free ports (never a fixed one
another process might hold); one definition of "free" serves them all.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
#: SeaweedFS serves gRPC on each of its ports plus this.
GRPC_OFFSET = 10000
#: Linux's default ephemeral range, where the kernel's own choice of a port falls.
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports it picks (a bind to port 0, an outgoing connection)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    """A free TCP port whose +``GRPC_OFFSET`` neighbour is free too (SeaweedFS puts gRPC there).

    Drawn where that neighbour lies above the kernel's ephemeral range: a port the kernel hands to anyone
    else (another stack's server bound to port 0, an outgoing connection) can then never be the neighbour
    a SeaweedFS started later binds, so stacks started side by side (two test workers) never collide on
    it. Where the ephemeral range reaches the top, the kernel picks.
    """
    first = max(1024, ephemeral_range()[1] + 1 - GRPC_OFFSET)
    last = 65535 - GRPC_OFFSET
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randint(first, last) if first <= last else _kernel_port()
        if port + GRPC_OFFSET <= 65535 and _bindable(port) and _bindable(port + GRPC_OFFSET):
            return port
    raise RuntimeError("no free port pair found")
