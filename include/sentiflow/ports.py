"""TCP ports on 127.0.0.1: a free one for a service we are about to start, and whether one is taken.

The local stack, the tests' servers and the benchmarks all start services on free ports (never a fixed one
another process might hold); one definition of "free" serves them all.
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def free_port() -> int:
    """A free TCP port whose +10000 neighbour is free too (SeaweedFS puts gRPC there)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind((HOST, port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")
