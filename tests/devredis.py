"""A real ``redis-server`` on 127.0.0.1 for tests: the shared rate-limit storage of several replicas.

Like the proxy (``tests/devproxy.py``): started on a free port through ``sentiflow.localstack.stack`` (its own
folder, log and PID file), no persistence, stopped by PID. ``redis-server`` comes from the distribution
(``scripts/system_deps.sh`` installs it).
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import HOST, StackSettings
from sentiflow.localstack.supervisor import Service

NAME = "redis"


def redis_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()), None
    )


def ping(port: int) -> bool:
    """Redis answers ``PING`` with ``+PONG`` (its health check)."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    stack: StackSettings
    port: int
    name: str = NAME

    @property
    def uri(self) -> str:
        return f"redis://{HOST}:{self.port}"

    @property
    def prefix(self) -> Path:
        return self.stack.home / self.name

    def start(self) -> RedisServer:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed; run scripts/system_deps.sh")
        self.prefix.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.prefix), "--daemonize", "no", "--protected-mode", "yes"]
        service = Service(name=self.name, argv=argv, health=lambda: ping(self.port), ports=(self.port,))
        supervisor.start(self.stack, service)
        return self

    def stop(self) -> None:
        supervisor.stop(self.stack, self.name)
