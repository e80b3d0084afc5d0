"""A shared rate limit behind a proxy: three replicas, one Redis, nginx in front.

Real processes only: three gunicorn replicas (2 workers each, their own state folders, one shared SQLite
database and prediction-id secret), a real ``redis-server`` holding the limit's counters, and nginx setting
``X-Forwarded-For`` as an ingress does; each replica trusts one proxy hop. Per-worker memory counters let
2 workers x 3 replicas = 6 times the limit through; the counters in Redis hold all six to the one limit.

1. one client posts feedback 150 times within a minute, each citing its own signed prediction: exactly the
   limit is accepted (201), whichever of the six workers answers;
2. a second client (another address as nginx sees it: bound to 127.0.0.2) is unaffected;
3. the first client cannot escape its key by sending its own ``X-Forwarded-For``.

No model is needed: ``/feedback`` checks the prediction id's signature with the fleet's secret, so the test
signs ids itself; the replicas follow an alias of a registered model that has none (unready, which
``/feedback`` does not need).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa
from requests.adapters import HTTPAdapter

from sentiflow.localstack import stack as localstack
from serving.prediction_ids import PredictionSigner
from tests.devproxy import RoundRobinProxy
from tests.devredis import RedisServer
from tests.devserver import DevServer, own_registered_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("nginx"),  # fails, never skips, without nginx
    pytest.mark.usefixtures("redis_server"),
]

LIMIT = 50
POSTS = 150
SECRET = "rate-limit-fleet-secret"
LABELS = ["negative", "positive"]


@dataclass
class Fleet:
    proxy: RoundRobinProxy
    redis: RedisServer
    db_url: str

    def rows(self) -> int:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def fleet(stack, tmp_path_factory) -> Iterator[Fleet]:
    redis = RedisServer(stack, localstack.free_port())
    db_url = f"sqlite:///{tmp_path_factory.mktemp('shared-db') / 'server.db'}"
    env = {
        "SENTIFLOW_SERVER_WORKERS": "2",
        "SENTIFLOW_SERVER_THREADS": "8",
        "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db_url,
        "SENTIFLOW_SERVER_PREDICTION_SECRET": SECRET,
        "SENTIFLOW_SERVER_FEEDBACK_RATE_LIMIT": f"{LIMIT} per minute",
        "SENTIFLOW_SERVER_RATE_LIMIT_STORAGE_URI": redis.uri,
        "SENTIFLOW_SERVER_TRUSTED_PROXY_HOPS": "1",
        "SENTIFLOW_SERVER_STARTUP_WAIT_S": "30",
    }
    servers: list[DevServer] = []
    proxy: RoundRobinProxy | None = None
    with own_registered_model("rate-limit-test"):  # no versions: nothing to load, the servers start fast
        try:
            redis.start()
            for name in ("a", "b", "c"):
                servers.append(
                    DevServer(
                        stack,
                        env,
                        state_root=tmp_path_factory.mktemp(f"state-{name}"),
                        name=f"ratelimit-{name}",
                        port=localstack.free_port(),
                    )
                )
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda srv: srv.start(), servers))
            proxy = RoundRobinProxy(
                stack,
                [f"127.0.0.1:{s.port}" for s in servers],
                localstack.free_port(),
                name="ratelimit-proxy",
            ).start()
            yield Fleet(proxy, redis, db_url)
        finally:
            if proxy is not None:
                proxy.stop()
            for srv in servers:
                srv.stop()
            redis.stop()


class _FromAddress(HTTPAdapter):
    """Connections from a chosen local address: another client, as nginx sees it."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def _session(address: str | None = None) -> requests.Session:
    session = requests.Session()
    if address is not None:
        session.mount("http://", _FromAddress(address))
    return session


def _bodies(tag: str, n: int) -> list[dict]:
    """``n`` feedback bodies, each citing its own prediction signed with the fleet's secret."""
    signer = PredictionSigner(SECRET)
    texts = [f"{tag} review number {i}" for i in range(n)]
    return [
        {
            "prediction_id": signer.sign(model_version="1", text=t, label="positive", labels=LABELS),
            "text": t,
            "correct": False,
            "true_label": "negative",
        }
        for t in texts
    ]


def test_one_client_gets_exactly_the_limit_across_replicas_and_others_are_unaffected(fleet: Fleet) -> None:
    url = f"{fleet.proxy.url}/feedback"
    first = _session()
    started = time.monotonic()
    answers = [first.post(url, json=body, timeout=30) for body in _bodies("first", POSTS)]
    elapsed = time.monotonic() - started
    assert elapsed < 55, f"{POSTS} posts took {elapsed:.0f} s: not within one window of the limit"
    codes = Counter(r.status_code for r in answers)
    assert codes == {201: LIMIT, 429: POSTS - LIMIT}, (
        codes,
        [r.text[:300] for r in answers if r.status_code == 422][:3],
    )
    assert [r.status_code for r in answers[:LIMIT]] == [201] * LIMIT  # the first ones, not any 50
    replicas = Counter(r.headers.get("X-Sentiflow-Replica") for r in answers if r.status_code == 201)
    assert len(replicas) == 3, replicas  # every replica accepted some: the count is shared, not per worker
    assert answers[-1].json()["status"] == 429 and "rate limit" in answers[-1].json()["message"]

    # another client behind the same proxy has its own count
    second = _session("127.0.0.2")
    others = [second.post(url, json=body, timeout=30) for body in _bodies("second", 10)]
    assert [r.status_code for r in others] == [201] * 10, [r.text[:200] for r in others]

    # the first client cannot pick another key: nginx appends the address it saw after the forged one
    for forged in ("203.0.113.7", "127.0.0.2", "10.1.2.3, 127.0.0.3"):
        body = _bodies(f"forged {forged}", 1)[0]
        r = first.post(url, json=body, headers={"X-Forwarded-For": forged}, timeout=30)
        assert r.status_code == 429, (forged, r.status_code, r.text[:200])
    assert fleet.rows() == LIMIT + 10
