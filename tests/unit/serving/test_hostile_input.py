"""Hostile and malformed requests against the real Flask app (in process): a clear 4xx, never a 5xx.

The cases are those a stranger found on a running server: deep nesting, huge integers, lone
surrogates, NUL, oversize labels, non-JSON content types, forged feedback; plus the micro-batcher's culprit
isolation and the 500 body that carries only a request id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from sentiflow.families.tfidf.model import TfidfClassifier
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.model.batcher import MicroBatcher, PredictionFailedError
from serving.model.loaded import LoadedModel
from tests.conftest import migrated_state
from tests.devserver import NEG_TEXTS, POS_TEXTS
from tests.openapi_check import validate_every_response
from tests.unit.serving.served_models import served

POISON = "poison pill"


class _Fragile:
    """A real TF-IDF classifier that raises on one text, like a tokenizer on input it cannot take."""

    def __init__(self) -> None:
        self.inner = TfidfClassifier.build(["negative", "positive"]).fit(
            NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12
        )
        self.label_names = self.inner.label_names
        self.family = "tfidf"

    def predict_proba(self, texts):
        if any(POISON in t for t in texts):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
        return self.inner.predict_proba(texts)


def _loaded(version: str = "7") -> LoadedModel:
    return served(_Fragile(), version)


@pytest.fixture
def rate_limit() -> str:
    return "1000 per minute"


@pytest.fixture
def app(tmp_path, rate_limit: str) -> Iterator[Flask]:
    settings = ServerSettings(
        state_dir=migrated_state(tmp_path), admin_token="t0ken", feedback_rate_limit=rate_limit
    )
    # nothing listens on port 9: the registry is down (no test may reach the local stack's fixed ports)
    app = create_app(settings, MLflowSettings(tracking_uri="http://127.0.0.1:9"), start=False)
    problems = validate_every_response(app)
    app.extensions["sentiflow"].manager._current = _loaded()
    yield app
    app.extensions["sentiflow"].manager.batcher.stop()
    app.extensions["sentiflow"].db.dispose()
    assert problems == [], "responses that depart from /openapi.json:\n" + "\n".join(problems)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _post(client: FlaskClient, path: str, raw: bytes | str, content_type: str = "application/json"):
    return client.post(path, data=raw, headers={"Content-Type": content_type})


HOSTILE = [
    ("nested 5000 deep", "/predict", "[" * 5000 + "]" * 5000, 400),
    ("nested object deep", "/predict", '{"text": ' + '{"a": ' * 3000 + "1" + "}" * 3001, 400),
    ("nested 20 deep in texts", "/predict", '{"texts": ' + "[" * 20 + "]" * 20 + "}", 400),
    ("int of 5000 digits", "/predict", '{"text": ' + "9" * 5000 + "}", 422),
    ("int of 5000 digits in feedback", "/feedback", '{"model_version": ' + "9" * 5000 + "}", 422),
    ("NaN", "/predict", '{"text": NaN}', 422),
    ("huge float", "/predict", '{"text": 1e999}', 422),
    ("lone surrogate predict", "/predict", '{"text": "bad \\ud800 text"}', 422),
    ("lone surrogate in list", "/predict", '{"texts": ["fine", "\\udfff"]}', 422),
    ("lone surrogate key", "/predict", '{"\\ud800": "x"}', 422),
    ("NUL predict", "/predict", '{"text": "a\\u0000b"}', 422),
    ("invalid utf-8 bytes", "/predict", b'{"text": "\xff\xfe"}', 400),
    (
        "lone surrogate feedback",
        "/feedback",
        '{"prediction_id": "x", "text": "\\ud800", "correct": true}',
        422,
    ),
    (
        "label of 5000 chars",
        "/feedback",
        json.dumps({"prediction_id": "x", "text": "t", "correct": False, "true_label": "x" * 5000}),
        422,
    ),
    ("version of 5000 chars", "/deploy", json.dumps({"version": "1" * 5000, "requested_by": "ann"}), 422),
    ("requester of 5000 chars", "/deploy", json.dumps({"version": "1", "requested_by": "a" * 5000}), 422),
    (
        "NUL in the force reason",
        "/deploy",
        '{"version": "1", "requested_by": "ann", "force_promote": true, "force_reason": "\\u0000"}',
        422,
    ),
]


@pytest.mark.parametrize(("case", "path", "raw", "status"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_bodies_get_a_4xx_that_names_the_problem(client, case, path, raw, status):
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    r = client.post(path, data=raw, headers=headers)
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert body["status"] == status and body["message"]
    assert "Traceback" not in body["message"]


def test_surrogate_error_names_the_field(client):
    r = _post(client, "/predict", '{"texts": ["fine", "also fine", "\\ud83d"]}')
    assert r.status_code == 422
    assert r.get_json()["message"].startswith("texts.2:")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_post_without_json_content_type_is_415(client, content_type):
    r = _post(client, "/predict", '{"text": "great"}', content_type)
    assert r.status_code == 415
    assert r.get_json()["error"] == "unsupported_media_type"
    ok = _post(client, "/predict", '{"text": "great"}', "application/json; charset=utf-8")
    assert ok.status_code == 200


def test_unexpected_error_body_carries_only_a_request_id(app: Flask, client, caplog):
    def boom():
        raise RuntimeError("secret path /etc/shadow and the request text")

    app.add_url_rule("/boom", "boom", boom)
    r = client.get("/boom", headers={"X-Request-ID": "trace-12345678"})
    assert r.status_code == 500
    body = r.get_json()
    assert "shadow" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)
    assert body["request_id"] == "trace-12345678" == r.headers["X-Request-ID"]
    assert "trace-12345678" in caplog.text and "shadow" in caplog.text


def test_batcher_isolates_the_culprit():
    model = _loaded()
    batcher = MicroBatcher(lambda: model, max_texts=64, wait_s=0.2)
    jobs = [["great fun"], ["dull", POISON], ["wonderful film"], ["boring"]]
    futures = [batcher.submit(t) for t in jobs]
    try:
        for texts, future in zip(jobs, futures, strict=True):
            if POISON in texts:
                with pytest.raises(PredictionFailedError) as info:
                    future.result(timeout=10)
                assert info.value.isolated
            else:
                _, probs = future.result(timeout=10)
                np.testing.assert_allclose(probs, model.classifier.inner.predict_proba(texts))
    finally:
        batcher.stop()


def test_predict_with_a_text_the_model_cannot_take_fails_only_that_request(client):
    r = _post(client, "/predict", json.dumps({"text": POISON}))
    assert r.status_code == 500 and "request_id" in r.get_json()
    assert "TextEncodeInput" not in r.get_data(as_text=True)
    assert _post(client, "/predict", json.dumps({"text": "great fun"})).status_code == 200


def _predict(client: FlaskClient, text: str) -> dict[str, Any]:
    r = _post(client, "/predict", json.dumps({"text": text}))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["predictions"][0]


def test_feedback_must_cite_a_signed_prediction_with_known_labels(app: Flask, client):
    p = _predict(client, "a wonderful moving film")
    ok = {"prediction_id": p["prediction_id"], "text": "a wonderful moving film", "correct": True}
    r = _post(client, "/feedback", json.dumps(ok))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["verified"] is True and r.get_json()["model_version"] == "7"
    assert r.get_json()["predicted_label"] == p["label"]

    forged = {**ok, "prediction_id": p["prediction_id"][:-3] + "abc"}
    other_text = {**ok, "text": "a different text"}
    banana = {**ok, "correct": False, "true_label": "banana"}
    lie = {**ok, "predicted_label": "negative" if p["label"] == "positive" else "positive"}
    wrong_version = {**ok, "model_version": "6"}
    missing = {k: v for k, v in ok.items() if k != "prediction_id"}
    for bad, error in [
        (forged, "invalid_prediction_id"),
        (other_text, "prediction_id_mismatch"),
        (banana, "unknown_label"),
        (lie, "prediction_id_mismatch"),
        (wrong_version, "prediction_id_mismatch"),
        (missing, "invalid_request"),
    ]:
        r = _post(client, "/feedback", json.dumps(bad))
        assert r.status_code == 422, (bad, r.get_data(as_text=True))
        assert r.get_json()["error"] == error
    frame = app.extensions["sentiflow"].feedback.frame()
    assert len(frame) == 1 and bool(frame["verified"].iloc[0])


@pytest.mark.parametrize("rate_limit", ["5 per minute"])
def test_feedback_is_rate_limited_per_client(client):
    p = _predict(client, "great fun")
    body = json.dumps({"prediction_id": p["prediction_id"], "text": "great fun", "correct": True})
    codes = [_post(client, "/feedback", body).status_code for _ in range(7)]
    # one feedback per prediction (409 for the repeats), and the repeats count towards the limit too
    assert codes[:5] == [201, 409, 409, 409, 409] and codes[5:] == [429, 429]
    r = _post(client, "/feedback", body)
    assert r.get_json()["status"] == 429 and "5 per 1 minute" in r.get_json()["message"]
