"""The OpenAPI document is generated from the routes and their pydantic models: complete and truthful."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask

from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.http.openapi import build_spec, openapi_path
from tests.conftest import migrated_state
from tests.openapi_check import SpecValidator, validate_every_response
from tests.unit.serving.test_hostile_input import _loaded

#: The web page's own routes (HTML and its helpers) may stay undocumented; everything else must not.
PAGE_PREFIXES = ("/ui", "/static")
PAGE_ROUTES = {"/"}


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    # nothing listens on port 9: the registry is down (no test may reach the local stack's fixed ports)
    mlflow = MLflowSettings(tracking_uri="http://127.0.0.1:9")
    app = create_app(
        ServerSettings(state_dir=migrated_state(tmp_path), admin_token="t0ken", reviewer_token="r3viewer"),
        mlflow,
        start=False,
    )
    app.extensions["sentiflow"].manager._current = _loaded()
    yield app
    app.extensions["sentiflow"].manager.batcher.stop()
    app.extensions["sentiflow"].db.dispose()


def test_every_registered_route_and_method_is_in_the_document(app: Flask) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    for rule in app.url_map.iter_rules():
        path, _ = openapi_path(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = spec["paths"][path][method.lower()]
            is_page = rule.rule in PAGE_ROUTES or rule.rule.startswith(PAGE_PREFIXES)
            assert is_page or not operation.get("x-undocumented"), (
                f"{method} {rule.rule} ({rule.endpoint}) lacks @openapi.document(...): docs/DEVELOPING.md"
            )


def test_a_new_route_appears_in_the_document_even_undocumented(app: Flask) -> None:
    app.add_url_rule("/items/<int:item_id>", "items", lambda item_id: "x")
    spec = build_spec(app)
    operation = spec["paths"]["/items/{item_id}"]
    assert operation["get"]["x-undocumented"] is True
    assert operation["parameters"][0] == {
        "name": "item_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }


def test_request_models_come_from_pydantic(app: Flask) -> None:
    spec = build_spec(app)
    feedback = spec["components"]["schemas"]["FeedbackRequest"]
    assert set(feedback["required"]) == {"prediction_id", "text", "correct"}
    assert feedback["additionalProperties"] is False
    predict = spec["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    export = {p["name"]: p for p in spec["paths"]["/feedback/export"]["get"]["parameters"]}
    assert export["format"]["schema"]["enum"] == ["csv", "parquet", "jsonl"]


def test_validator_catches_a_response_that_departs_from_the_document(app: Flask) -> None:
    validator = SpecValidator(build_spec(app))
    assert validator.problems("get", "/health", 200, "application/json", b'{"status": "ok"}') == []
    assert validator.problems("get", "/health", 200, "application/json", b'{"status": "bad"}')
    assert validator.problems("get", "/health", 200, "text/html", b"<p>")
    assert validator.problems("get", "/nope", 200, "application/json", b"{}")


def test_responses_of_a_working_session_match_the_document(app: Flask) -> None:
    problems = validate_every_response(app)
    client = app.test_client()
    headers = {"Authorization": "Bearer t0ken"}
    reviewer = {"Authorization": "Bearer r3viewer"}
    predicted = client.post("/predict", json={"texts": ["great fun", "dull"]}).get_json()
    p = predicted["predictions"][0]
    statuses = [
        client.get("/health").status_code,
        client.get("/ready").status_code,
        client.get("/model").status_code,
        client.post(
            "/feedback", json={"prediction_id": p["prediction_id"], "text": "great fun", "correct": True}
        ).status_code,
        client.post("/feedback", json={"prediction_id": "forged", "text": "x", "correct": True}).status_code,
        client.post("/predict", data="[" * 100, content_type="application/json").status_code,
        client.post("/predict", data="{}", content_type="text/plain").status_code,
        client.get("/feedback/export", headers=reviewer).status_code,
        client.get("/feedback/export?since_id=99999999999999999999", headers=reviewer).status_code,
        client.get("/feedback/export", headers=headers).status_code,  # the admin token reads no feedback
        client.get("/deploy/status?id=manual__1", headers=headers).status_code,  # no Airflow configured
        client.post(
            "/deploy?wait=true&timeout=nan", json={"version": "1", "requested_by": "ann"}, headers=headers
        ).status_code,
        client.post("/deploy", json={"version": "1", "requested_by": "ann"}, headers=headers).status_code,
        client.get("/metrics").status_code,
        client.get("/metrics", headers=headers).status_code,
        client.get("/replicas").status_code,
        client.get("/replicas", headers=headers).status_code,
        client.get("/openapi.json").status_code,
    ]
    expected = [200, 200, 200, 201, 422, 400, 415, 200, 400, 401, 503, 400, 503, 401, 200, 200, 200, 200]
    assert statuses == expected
    assert problems == [], json.dumps(problems, indent=1)
