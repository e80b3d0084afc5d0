"""Public API blueprint: predict, model info, health/readiness, feedback, metrics, OpenAPI spec."""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from sentiflow.modeling.base import probabilities_to_predictions
from serving import metrics
from serving.extension import ServerExtension, server
from serving.http import openapi
from serving.http.auth import is_admin, require_metrics
from serving.http.bodies import parse_body
from serving.http.errors import ApiError
from serving.http.openapi import ErrorBody, document
from serving.http.schemas import (
    FeedbackRecordOut,
    FeedbackRequest,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Readiness,
    apply_limits,
)
from serving.model.batcher import NotReadyError, PredictionFailedError, QueueFullError
from serving.prediction_ids import PredictionIdError, SignedPrediction
from serving.store.feedback import DuplicateFeedback

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)
_last_logged_reason: list[str] = [""]
#: What ``GET /model`` shows only with the admin token: the run, logged model and artifact location of the
#: served version, this replica's id and the last load error.
MODEL_ADMIN_ONLY: tuple[str, ...] = ("run_id", "model_id", "source")
DEPLOYED_ADMIN_ONLY: tuple[str, ...] = ("replica_id", "load_error")


def unready_reason(ext: ServerExtension) -> str:
    """Why no model is loaded, as this caller may see it.

    The follower's own reason names the tracking URI and quotes the exception of a failed read or load: the
    admin token gets it as it is; anyone else gets the stage (starting, alias unreadable, no version, load
    failing, loading) with the alias and version, and the full reason goes to the log (once per change).
    """
    detail = ext.manager.unready_reason
    if is_admin():
        return detail
    if detail and detail != _last_logged_reason[0]:
        _last_logged_reason[0] = detail
        log.warning("not ready: %s", detail)
    follower = ext.follower
    alias, version = follower.alias, follower.target
    if not follower.started.is_set():
        return f"starting: reading alias {alias!r} from the model registry"
    if follower.alias_error is not None:
        return f"cannot read alias {alias!r} from the model registry; retrying (the log has why)"
    if version is None:
        return f"alias {alias!r} names no version in the model registry yet; a release deploys one"
    if follower.read_deployed()["load_error"]:
        return f"could not load version {version} of alias {alias!r}; retrying (the log has why)"
    return f"loading version {version} of alias {alias!r}"


@bp.get("/health")
@document(summary="Liveness: the process answers", responses={200: Health})
def health() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/ready")
@document(summary="Readiness: a model is loaded", responses={200: Readiness, 503: Readiness})
def ready() -> ResponseReturnValue:
    manager = server().manager
    model = manager.current
    if model is None:
        return jsonify(ready=False, reason=unready_reason(server())), 503
    return jsonify(ready=True, model_version=model.version)


@bp.get("/model")
@document(summary="The model this worker serves", responses={200: ModelInfo, 503: ErrorBody})
def model() -> ResponseReturnValue:
    ext = server()
    current = ext.manager.current
    if current is None:
        raise ApiError(503, f"no model loaded: {unready_reason(ext)}", error="not_ready")
    info, deployed = current.info(), ext.follower.read_deployed()
    if not is_admin():  # where the files came from, which run made them, why a load failed: admin only
        info = {k: v for k, v in info.items() if k not in MODEL_ADMIN_ONLY}
        deployed = {k: v for k, v in deployed.items() if k not in DEPLOYED_ADMIN_ONLY}
    return jsonify({**info, "deployed": deployed})


def _feedback_link(text: str) -> dict[str, object]:
    """An OpenAPI link's body: the feedback that flags the first prediction wrong, citing what it was."""
    return {
        "prediction_id": "$response.body#/predictions/0/prediction_id",
        "text": text,
        "predicted_label": "$response.body#/predictions/0/label",
        "model_version": "$response.body#/model_version",
        "correct": False,
    }


@bp.post("/predict")
@document(
    summary="Classify one text or a list of texts",
    description="Exactly one of `text` or `texts`. Limits (SENTIFLOW_SERVER_*): 256 texts, 10,000 "
    "characters per text, 1 MiB body. Each prediction carries a signed `prediction_id` for /feedback. "
    "Rate-limited per client (SENTIFLOW_SERVER_PREDICT_RATE_LIMIT: a 429 with Retry-After); a full batch "
    "queue or a timed-out prediction is a 503 with Retry-After.",
    body=PredictRequest,
    links={
        200: {
            "FlagPrediction": {
                "operationId": "api_post_feedback",
                "description": "Feedback on the prediction of `text`, citing its signed id",
                "requestBody": _feedback_link("$request.body#/text"),
            },
            "FlagFirstOfTexts": {
                "operationId": "api_post_feedback",
                "description": "Feedback on the prediction of `texts[0]`, citing its signed id",
                "requestBody": _feedback_link("$request.body#/texts/0"),
            },
        }
    },
    responses={
        200: PredictResponse,
        400: ErrorBody,
        413: ErrorBody,
        415: ErrorBody,
        422: ErrorBody,
        429: ErrorBody,
        503: ErrorBody,
    },
)
def predict() -> ResponseReturnValue:
    ext = server()
    settings = ext.settings
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
    retry = {"Retry-After": str(settings.overload_retry_after_s)}
    try:
        # the client as the rate limit keys it (the peer, or the address ProxyFix found)
        model, probs = ext.manager.predict(texts, client=request.remote_addr)
    except NotReadyError as exc:
        raise ApiError(503, f"no model loaded: {unready_reason(ext)}", error="not_ready") from exc
    # an overload is no bug: no traceback in the log for each refused request of a flood
    except QueueFullError as exc:
        raise ApiError(
            503, f"the server is overloaded: {exc}; retry later", error="overloaded", headers=retry
        ) from None
    except FutureTimeout:
        raise ApiError(
            503, "prediction timed out: the server is overloaded", error="timeout", headers=retry
        ) from None
    except PredictionFailedError as exc:
        raise ApiError(
            422 if exc.isolated else 500,
            "the model could not score this request's text(s)"
            + (" (other requests in the same batch were fine)" if exc.isolated else ""),
            error="prediction_failed",
        ) from exc
    labels = model.label_names
    predicted = probabilities_to_predictions(probs, labels)
    predictions = []
    for text, p in zip(texts, predicted, strict=True):
        metrics.PREDICTIONS.labels(label=p.label).inc()
        prediction_id = ext.signer.sign(model_version=model.version, text=text, label=p.label, labels=labels)
        predictions.append(
            {"label": p.label, "label_id": p.label_id, "scores": p.scores, "prediction_id": prediction_id}
        )
    ext.record_predictions(texts, [p.label for p in predicted], model.version)  # drift sample
    return jsonify(model_version=model.version, model_name=model.name, predictions=predictions)


@bp.post("/feedback")
@document(
    summary="Say whether a prediction was right",
    description="Must cite the `prediction_id` /predict returned for the same text; `true_label` must be "
    "one of that model's labels (a 422 otherwise: no schema can state a signature). One feedback per "
    "prediction: a second post citing the same `prediction_id` is a 409 and stores nothing. Rate-limited "
    "per client (SENTIFLOW_SERVER_FEEDBACK_RATE_LIMIT). The row waits `pending` until a reviewer accepts "
    "it (/feedback/review): only reviewed rows train.",
    body=FeedbackRequest,
    responses={
        201: FeedbackRecordOut,
        400: ErrorBody,
        409: ErrorBody,
        413: ErrorBody,
        415: ErrorBody,
        422: ErrorBody,
        429: ErrorBody,
    },
)
def post_feedback() -> ResponseReturnValue:
    ext = server()
    body = parse_body(FeedbackRequest)
    if not body.text.strip():
        raise ApiError(422, "'text' is empty", error="empty_text")
    if len(body.text) > ext.settings.max_text_chars:
        raise ApiError(422, f"'text' is longer than {ext.settings.max_text_chars} characters")
    try:
        signed = ext.signer.verify(body.prediction_id, body.text)
    except PredictionIdError as exc:
        raise ApiError(422, str(exc), error=exc.error) from exc
    check_feedback_labels(body, signed)
    try:
        record = ext.feedback.add(
            text=body.text,
            predicted_label=signed.label,
            correct=body.correct,
            true_label=body.true_label,
            model_version=signed.model_version,
            verified=True,
            prediction_id=signed.prediction_id,
            client=request.remote_addr,  # the rate limit's key: what auto-accept counts as one client
        )
    except DuplicateFeedback as exc:
        raise ApiError(
            409,
            f"prediction_id: feedback on this prediction is already stored (row {exc.existing_id}); "
            "one feedback per prediction",
            error="duplicate_feedback",
        ) from exc
    metrics.FEEDBACK.labels(outcome="correct" if record.correct else "wrong").inc()
    ext.notify_feedback_stored(record)
    if ext.feedback.auto_accept(record, ext.settings.auto_accept_min_clients):
        record = ext.feedback.get(record.id) or record
    return jsonify(record.to_json()), 201


def check_feedback_labels(body: FeedbackRequest, signed: SignedPrediction) -> None:
    """What the client says must agree with what the server signed: 422 naming the field otherwise."""
    if body.predicted_label is not None and body.predicted_label != signed.label:
        raise ApiError(
            422,
            f"predicted_label: {body.predicted_label[:40]!r} is not what prediction_id says was predicted",
            error="prediction_id_mismatch",
        )
    if body.model_version is not None and str(body.model_version) != signed.model_version:
        raise ApiError(
            422,
            f"model_version: the prediction_id was issued by version {signed.model_version}",
            error="prediction_id_mismatch",
        )
    if body.true_label is not None and body.true_label not in signed.labels:
        raise ApiError(
            422,
            f"true_label: {body.true_label[:40]!r} is not one of the model's labels {list(signed.labels)}",
            error="unknown_label",
        )


@bp.get("/metrics")
@document(
    summary="Prometheus metrics (metrics or admin token)",
    responses={200: (("text/plain",), "Prometheus text format"), 401: ErrorBody},
)
@require_metrics
def prometheus() -> ResponseReturnValue:
    payload, content_type = metrics.exposition()
    return Response(payload, content_type=content_type)


@bp.get("/openapi.json")
@document(summary="This document", responses={200: (("application/json",), "OpenAPI 3.1 document")})
def openapi_document() -> ResponseReturnValue:
    """Generated from the registered routes and their models once per app (``serving.http.openapi``)."""
    spec = current_app.extensions.get("sentiflow_openapi")
    if spec is None:
        spec = openapi.build_spec(current_app)
        settings = server().settings
        apply_limits(
            spec["components"]["schemas"],
            max_texts=settings.max_texts,
            max_text_chars=settings.max_text_chars,
        )
        current_app.extensions["sentiflow_openapi"] = spec
    return jsonify(spec)
