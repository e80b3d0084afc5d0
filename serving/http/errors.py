"""Every error of the API is JSON ``{"error", "message", "status"}`` with a 4xx/5xx code, never an HTML page.

A UI blueprint that wants HTML errors registers its own handlers with ``blueprint.errorhandler``; app-wide
errors (unknown route, oversize body) stay JSON.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and a message that names the problem."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error or _slug(status)
        #: Response headers (``Retry-After`` of an overloaded server).
        self.headers = dict(headers or {})
        self.extra = extra


def _slug(status: int) -> str:
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_")


def error_response(status: int, message: str, error: str | None = None, **extra: Any) -> tuple[Response, int]:
    body = {"error": error or _slug(status), "message": message, "status": status, **extra}
    return jsonify(body), status


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def request_id() -> str:
    """This request's id: a sane ``X-Request-ID`` from a proxy, else a fresh one; echoed on every response."""
    rid = g.get("sentiflow_request_id")
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.sentiflow_request_id = rid
    return rid


def register_error_handlers(app: Flask) -> None:
    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        extra = dict(exc.extra)
        if exc.status >= 500 and exc.__cause__ is not None:
            extra["request_id"] = request_id()
            log.error("%s (request id %s)", exc.message, extra["request_id"], exc_info=exc.__cause__)
        response, status = error_response(exc.status, exc.message, exc.error, **extra)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body too large: the limit is {limit} bytes"
        elif status == 404:
            message = f"no such endpoint: {request.method} {request.path} (the API is in /openapi.json)"
        elif status == 429:
            message = f"rate limit exceeded ({message}): slow down and retry later"
        elif status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        response, code = error_response(status, message)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # The exception's text may quote the request or internals: it goes to the log, the client gets an
        # id to quote to the operator.
        rid = request_id()
        log.exception("unhandled error in %s %s (request id %s)", request.method, request.path, rid)
        return error_response(
            500, f"internal error; the server log has the details under request id {rid}", request_id=rid
        )
