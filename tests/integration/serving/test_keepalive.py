"""Keep-alive that fits a proxy: behind nginx with upstream keep-alive, bursts of POSTs separated
by idle gaps longer than gunicorn's default 5 s keep-alive get no 502.

A proxy keeps idle upstream connections for its own timeout (nginx ``keepalive_timeout`` in the upstream
block, ingress-nginx ``upstream-keepalive-timeout`` 60 s, AWS ALB 60 s) and reuses them. If the server
closes an idle connection first, a request the proxy sends on it just then is reset: nginx answers 502 and,
for a POST, does not retry. The server's keep-alive (``SENTIFLOW_SERVER_KEEPALIVE_S``, 75 s) outlives the
proxy's, so the proxy always closes first.

Real processes: the session's MLflow + S3 stack, one gunicorn model server (2 workers) serving a TF-IDF
version, nginx on 127.0.0.1 with an upstream ``keepalive`` pool (PID file, stopped by PID). A second server
(``old``) with gunicorn's default 5 s keep-alive is the control: its upstream connections are gone after a
6.5 s gap, which shows the connection count below measures the server's keep-alive.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil
import pytest
import requests

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import HOST, StackSettings
from sentiflow.localstack.supervisor import Service
from tests.devproxy import PREAMBLE, nginx_binary
from tests.devserver import (
    DevServer,
    make_champion,
    own_registered_model,
    register_tfidf_versions,
    threads_for_clients,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("nginx"),  # fails, never skips, without nginx
]

#: nginx upstream keepalive_timeout. Proxies default to 60 s (ingress-nginx, an AWS ALB); any value below the
#: server's keep-alive shows the same order of closing, and a short one keeps the wait for it short.
PROXY_KEEPALIVE_S = 15
OLD_KEEPALIVE_S = 5  # gunicorn's default, what the server used before
ROUNDS = 3
CLIENTS = 8
PER_CLIENT = 8  # 3 rounds x 8 clients x 8 requests = 192 POSTs
GAP_S = (5.5, 7.0)  # idle between rounds: longer than gunicorn's default keep-alive, shorter than the proxy's

NGINX_CONF = (
    PREAMBLE
    + """\
    upstream current {{
        server {current};
        keepalive 16;
        keepalive_timeout {proxy_keepalive}s;
    }}
    upstream idle {{
        server {current};
        keepalive 1;
        keepalive_timeout {proxy_keepalive}s;
    }}
    upstream old {{
        server {old};
        keepalive 16;
        keepalive_timeout {proxy_keepalive}s;
    }}
    server {{
        listen {host}:{port};
        location = /proxy-health {{ return 200 "ok"; }}
        location / {{
            proxy_pass http://current;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /idle/ {{
            proxy_pass http://idle/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /old/ {{
            proxy_pass http://old/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
)


@dataclass
class Setup:
    proxy_url: str
    current: DevServer
    old: DevServer
    #: nginx's side (local port) of the one connection its ``idle`` pool holds to ``current``, and since when
    idle_port: int
    idle_since: float


def _server(stack: StackSettings, name: str, tmp_path_factory, **env: str) -> DevServer:
    return DevServer(
        stack,
        {
            "SENTIFLOW_SERVER_WORKERS": "2",
            "SENTIFLOW_SERVER_THREADS": threads_for_clients(CLIENTS),
            "SENTIFLOW_SERVER_RUNTIME": "torch",
            "SENTIFLOW_SERVER_FEEDBACK_DB_URL": f"sqlite:///{tmp_path_factory.mktemp(name) / 'server.db'}",
            **env,
        },
        state_root=tmp_path_factory.mktemp(f"state-{name}"),
        name=f"keepalive-{name}",
        port=localstack.free_port(),
    )


@pytest.fixture(scope="module")
def setup(stack, tmp_path_factory) -> Iterator[Setup]:
    with own_registered_model("keepalive-test"):
        (version,) = register_tfidf_versions(1)
        make_champion(version)
        current = _server(stack, "current", tmp_path_factory)  # the shipped default keep-alive
        old = _server(stack, "old", tmp_path_factory, SENTIFLOW_SERVER_KEEPALIVE_S=str(OLD_KEEPALIVE_S))
        prefix = stack.home / "keepalive-proxy"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        port = localstack.free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                prefix=prefix,
                current=f"{HOST}:{current.port}",
                old=f"{HOST}:{old.port}",
                proxy_keepalive=PROXY_KEEPALIVE_S,
                host=HOST,
                port=port,
            )
        )
        binary = nginx_binary()
        assert binary
        proxy = Service(
            name="keepalive-proxy",
            argv=[binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
            health=supervisor.http_ok(f"http://{HOST}:{port}/proxy-health"),
            ports=(port,),
        )
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda srv: srv.start(), (current, old)))
            supervisor.start(stack, proxy)
            url = f"http://{HOST}:{port}"
            before = _peer_ports(current)
            assert requests.get(f"{url}/idle/health", timeout=30).status_code == 200
            (idle_port,) = _peer_ports(current) - before
            yield Setup(url, current, old, idle_port, time.monotonic())
        finally:
            supervisor.stop(stack, proxy.name)
            current.stop()
            old.stop()


def _peer_ports(server: DevServer) -> set[int]:
    """The other ends (nginx's local ports) of the established connections into the server's port."""
    return {
        c.raddr.port
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.raddr and c.laddr.port == server.port
    }


def upstream_connections(server: DevServer) -> int:
    """Established TCP connections into the server's port: the proxy's idle keep-alive pool."""
    return sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == server.port
    )


def _ready(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if requests.get(f"{url}/ready", timeout=5).status_code == 200:
            return
        time.sleep(0.5)
    pytest.fail(f"{url} not ready")


def test_bursts_with_idle_gaps_behind_nginx_keepalive_get_no_5xx(setup):
    _ready(setup.current.url)
    statuses: Counter[int | str] = Counter()
    reused_after_gap: list[int] = []
    rng = random.Random(21)
    started = time.monotonic()

    def client(round_no: int, i: int) -> list[int | str]:
        out: list[int | str] = []
        with requests.Session() as session:
            for j in range(PER_CLIENT):
                text = f"round {round_no} client {i} request {j}: a wonderful film" + " great" * (j % 3)
                try:
                    r = session.post(f"{setup.proxy_url}/predict", json={"text": text}, timeout=30)
                    out.append(r.status_code)
                except requests.RequestException as exc:
                    out.append(type(exc).__name__)
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        for round_no in range(ROUNDS):
            if round_no:
                time.sleep(rng.uniform(*GAP_S))
                # nginx kept its upstream connections through the idle gap: the server did not close them
                reused_after_gap.append(upstream_connections(setup.current))
            for result in pool.map(lambda i, r=round_no: client(r, i), range(CLIENTS)):
                statuses.update(result)
    elapsed = time.monotonic() - started

    assert sum(statuses.values()) == ROUNDS * CLIENTS * PER_CLIENT
    non_2xx = {k: n for k, n in statuses.items() if not (isinstance(k, int) and 200 <= k < 300)}
    assert non_2xx == {}, f"{non_2xx} of {sum(statuses.values())}"
    assert all(n >= 1 for n in reused_after_gap), reused_after_gap
    assert elapsed < 60


def test_gunicorns_default_5s_keepalive_drops_the_proxys_connections_in_a_gap(setup):
    """Control: with gunicorn's default 5 s the server closes nginx's idle connections during a 6.5 s gap (the
    race that gave 502s); the count above therefore measures the server's keep-alive."""
    with requests.Session() as session:
        for _ in range(8):
            assert session.get(f"{setup.proxy_url}/old/health", timeout=10).status_code == 200
    assert upstream_connections(setup.old) >= 1
    time.sleep(OLD_KEEPALIVE_S + 1.5)
    assert upstream_connections(setup.old) == 0


def test_the_proxy_closes_its_idle_connection_first_with_the_default_keepalive(setup):
    """Measured, not compared: nginx's idle connection to the server with the shipped keep-alive lives until
    nginx's own ``keepalive_timeout`` ends it. The side that closes a TCP connection first holds it in
    TIME_WAIT: that is nginx's end here, never the server's (which would be the 502 race above)."""
    time.sleep(max(0.0, setup.idle_since + PROXY_KEEPALIVE_S + 2 - time.monotonic()))
    pair = {setup.current.port, setup.idle_port}
    states = {
        (c.laddr.port, c.raddr.port): c.status
        for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.raddr and {c.laddr.port, c.raddr.port} == pair
    }
    assert states.get((setup.idle_port, setup.current.port)) == psutil.CONN_TIME_WAIT, states  # nginx closed
    assert (setup.current.port, setup.idle_port) not in states, states  # the server's end is gone
