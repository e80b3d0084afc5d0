"""Start and stop local services by PID file: the one process supervisor of the local stack and the tests.

A ``Service`` is an argv, a health check and the ports it binds. ``start`` refuses a port some other process
holds (we would adopt a stranger), runs the service's one-shot ``init`` step, starts it in its own process
group with a PID file and a log file under the stack's home, and waits until it is healthy. ``stop`` stops
only the process group its PID file names. The local stack (``sentiflow.localstack.stack``), ``make
airflow``, and the tests' dev servers, proxies and Redis all start their processes here.

Its primitives serve the tests and benchmarks too, so each has one definition: a free port on 127.0.0.1
(never a fixed one another process might hold), and whether a PID still runs, where a zombie child counts as
gone. psutil reads the process table, so no code here parses ``/proc``. (The model server itself probes no
PIDs: its replicas and workers report to the shared database.)
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

REPO_ROOT = Path(__file__).resolve().parents[3]

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

    Both lie below the kernel's ephemeral range: a port the kernel hands to anyone else (another stack's
    server bound to port 0, any outgoing connection) can then never take one between its draw and the
    bind of the server it is for, seconds later, so stacks started side by side (two test workers) and
    their clients never collide with it. Where the range leaves no room below, the neighbour alone lies
    above it; where it reaches the top as well, the kernel picks.
    """
    low, high = ephemeral_range()
    first, last = 1024, low - 1 - GRPC_OFFSET
    if first > last:
        first, last = max(1024, high + 1 - GRPC_OFFSET), 65535 - GRPC_OFFSET
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randint(first, last) if first <= last else _kernel_port()
        if port + GRPC_OFFSET <= 65535 and _bindable(port) and _bindable(port + GRPC_OFFSET):
            return port
    raise RuntimeError("no free port pair found")


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # exited, not yet reaped: gone
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # alive, owned by someone else
        return True


def reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our exited child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


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


class StackHome(Protocol):
    """What the supervisor needs of a stack: where its PID and log files go, and how long a start may take."""

    @property
    def home(self) -> Path: ...

    @property
    def start_timeout_s(self) -> float: ...


@dataclass
class Service:
    name: str
    argv: list[str]
    health: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT
    prepare: Callable[[], None] | None = None
    #: Ports the service binds; all must be free before we start it, or we would adopt a stranger.
    ports: tuple[int, ...] = ()
    #: A one-shot step run to completion, with the service's environment, before the service starts: the
    #: model server's schema migrations (its workers never create tables; compose and k8s run the same
    #: command as a one-shot service / init container).
    init: list[str] | None = None
    #: Variables of the caller's environment the service must not inherit: another component's secrets
    #: (the model server never holds the pipeline's identity, however the stack was started).
    withhold: tuple[str, ...] = ()


def service_env(service: Service) -> dict[str, str]:
    """The environment ``service`` runs with: the caller's, less what it withholds, plus its own."""
    return {**{k: v for k, v in os.environ.items() if k not in service.withhold}, **service.env}


def http_ok(url: str) -> Callable[[], bool]:
    """A health check: ``url`` answers with any status below 500."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return 200 <= response.status < 500
        except Exception:
            return False

    return check


def pidfile(stack: StackHome, name: str) -> Path:
    return stack.home / "run" / f"{name}.pid"


def logfile(stack: StackHome, name: str) -> Path:
    return stack.home / "logs" / f"{name}.log"


def running_pid(stack: StackHome, name: str) -> int | None:
    path = pidfile(stack, name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        return None
    return pid if pid_alive(pid) else None


def start(stack: StackHome, service: Service) -> int:
    """Start one service unless its PID file names a live process; wait until it is healthy."""
    pid = running_pid(stack, service.name)
    if pid is not None and service.health():
        return pid
    busy = [port for port in service.ports if port_in_use(port)]
    if busy:
        raise RuntimeError(
            f"cannot start {service.name}: port(s) {busy} on {HOST} are already in use by a process "
            f"this stack did not start (no live PID file under {stack.home / 'run'}). Stop it, or choose "
            f"other ports with SENTIFLOW_STACK_*_PORT."
        )
    if service.prepare:
        service.prepare()
    log = logfile(stack, service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile(stack, service.name).parent.mkdir(parents=True, exist_ok=True)
    env = service_env(service)
    if service.init:
        _run_init(service, env, log)
    with log.open("ab") as out:
        out.write(f"\n=== {time.ctime()} starting: {shlex.join(service.argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            service.argv,
            cwd=service.cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so `down` stops it and its children
        )
    pidfile(stack, service.name).write_text(str(proc.pid))
    deadline = time.monotonic() + stack.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with code {proc.returncode} during start; log {log}:\n{_tail(log)}"
            )
        if service.health():
            return proc.pid
        time.sleep(0.5)
    stop(stack, service.name)
    raise RuntimeError(
        f"{service.name} not healthy after {stack.start_timeout_s:.0f}s; log {log}:\n{_tail(log)}"
    )


def _run_init(service: Service, env: dict[str, str], log: Path) -> None:
    """The service's one-shot step (``Service.init``), its output appended to the service's log."""
    assert service.init is not None
    with log.open("ab") as out:
        out.write(f"\n=== {time.ctime()} {service.name} init: {shlex.join(service.init)}\n".encode())
        out.flush()
        done = subprocess.run(
            service.init, cwd=service.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"{service.name}'s init step `{shlex.join(service.init)}` exited with code {done.returncode}; "
            f"log {log}:\n{_tail(log)}"
        )


def stop(stack: StackHome, name: str, timeout_s: float = 15.0) -> bool:
    """Stop the process group we started for ``name`` (SIGTERM, then SIGKILL); remove its PID file."""
    path = pidfile(stack, name)
    pid = running_pid(stack, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not wait_group_gone(pid, timeout_s, poll_s=0.2):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_group_gone(pid, 5)
    path.unlink(missing_ok=True)
    return pid is not None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
