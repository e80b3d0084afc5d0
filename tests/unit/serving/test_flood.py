"""The server under a flood (in process): per-client limits, a bounded batch queue, dropped work, and
request threads kept free of predictions for ``/health`` and ``/ready``.

The same under gunicorn, with a flood of the largest batches, is ``benchmarks/flood.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask

from sentiflow.families.tfidf.model import TfidfClassifier
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.extension import server
from serving.model.batcher import MicroBatcher, QueueFullError
from serving.model.loaded import LoadedModel
from tests.conftest import migrated_state
from tests.devserver import NEG_TEXTS, POS_TEXTS
from tests.unit.serving.served_models import served


class _Gated:
    """A real TF-IDF classifier that holds each forward pass until the test opens the gate."""

    family = "tfidf"

    def __init__(self) -> None:
        self.inner = TfidfClassifier.build(["negative", "positive"]).fit(
            NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12
        )
        self.label_names = self.inner.label_names
        self.gate = threading.Event()
        self.running = threading.Event()
        self.seen: list[str] = []
        self.calls: list[list[str]] = []

    def predict_proba(self, texts):
        self.running.set()
        self.gate.wait(10)
        self.seen.extend(texts)
        self.calls.append(list(texts))
        return self.inner.predict_proba(texts)


def _loaded(clf: _Gated) -> LoadedModel:
    return served(clf, "1")


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def gated() -> _Gated:
    return _Gated()


def _app(tmp_path, gated: _Gated, **overrides) -> Flask:
    settings = ServerSettings(state_dir=migrated_state(tmp_path), **overrides)
    # nothing listens on port 9: the registry is down (no test may reach the local stack's fixed ports)
    app = create_app(settings, MLflowSettings(tracking_uri="http://127.0.0.1:9"), start=False)
    server(app).manager._current = _loaded(gated)
    return app


@pytest.fixture
def closing() -> Iterator[list[Flask]]:
    apps: list[Flask] = []
    yield apps
    for app in apps:
        server(app).manager.batcher.stop()
        server(app).db.dispose()


def test_predict_and_the_page_api_are_limited_per_client_with_retry_after(tmp_path, gated, closing):
    gated.gate.set()
    app = _app(tmp_path, gated, predict_rate_limit="3 per minute", ui_api_rate_limit="2 per minute")
    closing.append(app)
    client = app.test_client()
    codes = [client.post("/predict", json={"text": f"fine film {i}"}).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.post("/predict", json={"text": "one more"})
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    other = client.post("/predict", json={"text": "fine"}, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 200  # another client has its own count

    # every /ui/api/* view shares one count per client; beyond it no registry or database work runs
    daily = [client.get("/ui/api/feedback/daily?days=3").status_code for _ in range(2)]
    assert daily == [200, 200]
    for path in ("/ui/api/feedback/daily", "/ui/api/models", "/ui/api/versions"):
        r = client.get(path)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, (path, r.status_code)
    assert client.get("/health").status_code == 200  # liveness is never limited


def test_a_refused_request_s_body_is_read_before_the_answer(tmp_path, gated, closing):
    """gunicorn drains only 64 KiB of a body the app left unread, then closes: the client, still sending,
    would get a connection reset instead of its 429. The app reads the rest of a refused body."""
    import io
    import json

    gated.gate.set()
    app = _app(tmp_path, gated, predict_rate_limit="1 per minute")
    closing.append(app)
    client = app.test_client()
    body = json.dumps({"texts": ["a long review " * 280] * 256}).encode()  # just under 1 MiB
    assert 900_000 < len(body) < server(app).settings.max_body_bytes
    for expected in (200, 429):
        stream = io.BytesIO(body)
        r = client.post(
            "/predict",
            input_stream=stream,
            content_type="application/json",
            headers={"Content-Length": str(len(body))},
        )
        assert r.status_code == expected
        assert stream.tell() == len(body), f"{len(body) - stream.tell()} bytes left unread on a {expected}"


def test_a_full_batch_queue_answers_503_with_retry_after_and_runs_nothing_of_it(tmp_path, gated, closing):
    app = _app(tmp_path, gated, batch_queue_max_texts=4, overload_retry_after_s=2)
    closing.append(app)
    client = app.test_client()
    batcher = server(app).manager.batcher
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/predict", json={"text": "in the forward pass"})
        assert gated.running.wait(10)  # taken by the inference thread, held at the gate
        _wait_for(lambda: batcher.queued_texts == 0, "the first job leaves the queue")
        queued = pool.submit(client.post, "/predict", json={"texts": [f"queued {i}" for i in range(4)]})
        _wait_for(lambda: batcher.queued_texts == 4, "the second job waits in the queue")
        refused = client.post("/predict", json={"text": "one text too many"})
        assert refused.status_code == 503, refused.get_json()
        assert refused.get_json()["error"] == "overloaded"
        assert refused.headers["Retry-After"] == "2"
        gated.gate.set()
        assert running.result(10).status_code == 200 and queued.result(10).status_code == 200
    assert "one text too many" not in gated.seen
    assert client.post("/predict", json={"text": "room again"}).status_code == 200


def test_one_client_cannot_fill_the_queue_for_the_others(tmp_path, gated, closing):
    app = _app(tmp_path, gated, batch_queue_max_texts=1000, batch_queue_max_client_texts=4)
    closing.append(app)
    client = app.test_client()
    batcher = server(app).manager.batcher
    other = {"REMOTE_ADDR": "127.0.0.2"}
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(client.post, "/predict", json={"text": "in the forward pass"})
        assert gated.running.wait(10)
        _wait_for(lambda: batcher.queued_texts == 0, "the first job leaves the queue")
        queued = pool.submit(client.post, "/predict", json={"texts": [f"mine {i}" for i in range(4)]})
        _wait_for(lambda: batcher.queued_texts == 4, "the flooding client's share is full")
        refused = client.post("/predict", json={"text": "and one more of mine"})
        assert refused.status_code == 503 and "per client" in refused.get_json()["message"]
        assert refused.headers["Retry-After"] == "1"
        theirs = pool.submit(client.post, "/predict", json={"text": "another client"}, environ_base=other)
        _wait_for(lambda: batcher.queued_texts == 5, "the other client's text is queued")
        gated.gate.set()
        assert [f.result(10).status_code for f in (running, queued, theirs)] == [200, 200, 200]


def test_prediction_threads_are_bounded_so_health_and_ready_always_have_one(tmp_path, gated, closing):
    """gunicorn's gthread worker runs every request on one pool of ``threads``: /predict may hold at most
    ``threads - health_threads`` of them, the next one is refused at once instead of taking the last."""
    app = _app(tmp_path, gated, threads=4, health_threads=2, batch_queue_max_texts=1000)
    closing.append(app)
    client = app.test_client()
    assert server(app).manager.batcher.max_waiting == 2
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(client.post, "/predict", json={"text": f"wait {i}"}) for i in range(2)]
        _wait_for(lambda: server(app).manager.batcher._waiting == 2, "two request threads wait")
        refused = client.post("/predict", json={"text": "a third waiter"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        gated.gate.set()
        assert [f.result(10).status_code for f in waiting] == [200, 200]


def test_a_timed_out_requests_queued_work_is_dropped_unrun(gated):
    model = _loaded(gated)
    batcher = MicroBatcher(lambda: model, max_texts=64, wait_s=0.0)
    try:
        first = batcher.submit(["holds the inference thread"])
        assert gated.running.wait(10)
        with pytest.raises(TimeoutError):
            batcher.predict(["given up on"], timeout_s=0.1)
        assert batcher.queued_texts == 1  # still queued, cancelled
        after = batcher.submit(["asked later"])
        gated.gate.set()
        first.result(10)
        after.result(10)
        assert gated.seen == ["holds the inference thread", "asked later"]
        assert batcher.queued_texts == 0
    finally:
        batcher.stop()


def test_an_empty_queue_takes_a_request_larger_than_its_bound(gated):
    """Any request within the API's limits gets in when the queue is empty; behind it, the bound holds."""
    model = _loaded(gated)
    batcher = MicroBatcher(lambda: model, max_texts=8, wait_s=0.0, max_queued_texts=4)
    try:
        batcher.submit(["holds the inference thread"])
        assert gated.running.wait(10)
        _wait_for(lambda: batcher.queued_texts == 0, "the first job leaves the queue")
        larger = batcher.submit([f"text {i}" for i in range(6)])
        with pytest.raises(QueueFullError, match="limit of 4"):
            batcher.submit(["one more"])
        gated.gate.set()
        assert larger.result(10)[1].shape == (6, 2)
    finally:
        gated.gate.set()
        batcher.stop()


def test_a_large_request_runs_in_pieces_and_a_short_one_goes_first(gated):
    """One client's 12-text request must not hold another's single text for all 12: pieces of at most
    ``max_texts`` texts (and ``max_chars`` characters), the smallest waiting piece first."""
    model = _loaded(gated)
    batcher = MicroBatcher(lambda: model, max_texts=4, wait_s=0.0, max_chars=1000)
    try:
        batcher.submit(["holds the inference thread"])
        assert gated.running.wait(10)
        big = [f"long review number {i}" for i in range(12)]
        large = batcher.submit(big)
        single = batcher.submit(["a single short one"])
        gated.gate.set()
        got_model, probs = large.result(10)
        single.result(10)
        assert gated.calls[1] == ["a single short one"]  # before any piece of the large request
        assert [len(c) for c in gated.calls[2:]] == [4, 4, 4]
        assert got_model is model
        assert (probs == gated.inner.predict_proba(big)).all()  # the pieces' rows back in order
    finally:
        batcher.stop()


def test_pieces_are_bounded_in_characters_too():
    clf = _Gated()
    clf.gate.set()
    model = _loaded(clf)
    batcher = MicroBatcher(lambda: model, max_texts=64, wait_s=0.0, max_chars=25)
    try:
        batcher.predict([f"text {i:05d}" for i in range(5)], timeout_s=10)  # 10 characters each
        assert sorted(len(c) for c in clf.calls) == [1, 2, 2]  # the smallest piece runs first
    finally:
        batcher.stop()
