"""A round-robin HTTP proxy (nginx) in front of several model servers: the Kubernetes Service, locally.

Tests and the replica benchmark start three servers and put this in front, so requests, deploys and
feedback reach a different replica each time, as they do behind a Service. It runs on 127.0.0.1 with its
own prefix folder, config, logs and PID file (``sentiflow.localstack.stack`` process handling), and stops
by PID.
nginx comes from the distribution (``scripts/system_deps.sh`` installs it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import HOST, StackSettings
from sentiflow.localstack.supervisor import Service

NAME = "proxy"

#: The start of every nginx config the tests run: one worker in the foreground, files under {prefix}.
PREAMBLE = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
"""

CONFIG = (
    PREAMBLE
    + """\
    client_max_body_size 4m;
    upstream model_servers {{
{servers}
    }}
    server {{
        listen {host}:{port};
        location = /proxy-health {{ return 200 "ok"; }}
        # a prediction has no side effect a second attempt could double (docs/deployment.md, "A pod that
        # dies mid-request"): when its replica dies with the request in flight, nginx tries the next one
        # instead of answering 502. Feedback and deploys are not retried (one row per prediction, 409).
        location = /predict {{
            proxy_pass http://model_servers;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 900s;
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 3;
        }}
        location / {{
            # one upstream connection per request, like a connection-level Service: no idle keep-alive
            # connection that gunicorn may close while nginx reuses it (a 502 on a POST)
            proxy_pass http://model_servers;
            proxy_set_header Host $host;
            # the client's address as nginx saw it, appended to whatever the client sent: a server with
            # one trusted proxy hop keys its rate limit on this last value (a client cannot forge it)
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 900s;
        }}
    }}
}}
"""
)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


@dataclass
class RoundRobinProxy:
    stack: StackSettings
    backends: list[str]  # "127.0.0.1:PORT"
    port: int
    name: str = NAME

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def prefix(self) -> Path:
        return self.stack.home / self.name

    def start(self) -> RoundRobinProxy:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed; run scripts/system_deps.sh")
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server {b} max_fails=1 fail_timeout=2s;" for b in self.backends)
        conf = self.prefix / "nginx.conf"
        conf.write_text(CONFIG.format(prefix=self.prefix, servers=servers, host=HOST, port=self.port))
        service = Service(
            name=self.name,
            argv=[binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")],
            health=supervisor.http_ok(f"{self.url}/proxy-health"),
            ports=(self.port,),
        )
        supervisor.start(self.stack, service)
        return self

    def stop(self) -> None:
        supervisor.stop(self.stack, self.name)
