"""Public API blueprint: predict, model info, health/readiness, feedback, metrics, OpenAPI spec."""

from __future__ import annotations

import json
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify

from serving import metrics
from serving.batcher import NotReadyError
from serving.errors import ApiError
from serving.schemas import FeedbackRequest, PredictRequest, parse_body

bp = Blueprint("api", __name__)
OPENAPI_FILE = Path(__file__).with_name("openapi.json")


def _server():
    return current_app.extensions["sentiflow"]


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    manager = _server().manager
    model = manager.current
    if model is None:
        return jsonify(ready=False, reason=manager.unready_reason), 503
    return jsonify(ready=True, model_version=model.version)


@bp.get("/model")
def model():
    manager = _server().manager
    current = manager.current
    if current is None:
        raise ApiError(503, f"no model loaded: {manager.unready_reason}", error="not_ready")
    return jsonify({**current.info(), "deployed": manager.state.read_deployed()})


@bp.post("/predict")
def predict():
    server = _server()
    settings = server.settings
    body = parse_body(PredictRequest)
    texts = body.all_texts()
    if not texts:
        raise ApiError(422, "'texts' is empty: send at least one text", error="invalid_request")
    if len(texts) > settings.max_texts:
        raise ApiError(
            422, f"too many texts: {len(texts)} > the limit of {settings.max_texts}", error="too_many_texts"
        )
    for i, text in enumerate(texts):
        if not text.strip():
            raise ApiError(422, f"text {i} is empty or whitespace only", error="empty_text")
        if len(text) > settings.max_text_chars:
            raise ApiError(
                422,
                f"text {i} has {len(text)} characters > the limit of {settings.max_text_chars}",
                error="text_too_long",
            )
    try:
        model, probs = server.manager.predict(texts)
    except NotReadyError as exc:
        raise ApiError(
            503, f"no model loaded: {server.manager.unready_reason or exc}", error="not_ready"
        ) from exc
    except FutureTimeout as exc:
        raise ApiError(503, "prediction timed out: the server is overloaded", error="timeout") from exc
    labels = model.label_names
    predictions = []
    for row in probs:
        label_id = int(row.argmax())
        metrics.PREDICTIONS.labels(label=labels[label_id]).inc()
        predictions.append(
            {
                "label": labels[label_id],
                "label_id": label_id,
                "scores": {name: float(p) for name, p in zip(labels, row, strict=True)},
            }
        )
    server.record_predictions(texts, [p["label"] for p in predictions], model.version)  # drift sample
    return jsonify(model_version=model.version, model_name=model.name, predictions=predictions)


@bp.post("/feedback")
def post_feedback():
    server = _server()
    body = parse_body(FeedbackRequest)
    if not body.text.strip():
        raise ApiError(422, "'text' is empty", error="empty_text")
    if len(body.text) > server.settings.max_text_chars:
        raise ApiError(422, f"'text' is longer than {server.settings.max_text_chars} characters")
    record = server.feedback.add(
        text=body.text,
        predicted_label=body.predicted_label,
        correct=body.correct,
        true_label=body.true_label,
        model_version=None if body.model_version is None else str(body.model_version),
    )
    metrics.FEEDBACK.labels(outcome="correct" if record.correct else "wrong").inc()
    server.notify_feedback_stored(record)
    return jsonify(record.to_json()), 201


@bp.get("/metrics")
def prometheus():
    payload, content_type = metrics.exposition()
    return Response(payload, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    return jsonify(json.loads(OPENAPI_FILE.read_text()))
