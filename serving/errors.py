"""Every error of the API is JSON ``{"error", "message", "status"}`` with a 4xx/5xx code, never an HTML page.

A UI blueprint that wants HTML errors registers its own handlers with ``blueprint.errorhandler``; app-wide
errors (unknown route, oversize body) stay JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and a message that names the problem."""

    def __init__(self, status: int, message: str, *, error: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error or _slug(status)
        self.extra = extra


def _slug(status: int) -> str:
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_")


def error_response(status: int, message: str, error: str | None = None, **extra: Any):
    body = {"error": error or _slug(status), "message": message, "status": status, **extra}
    return jsonify(body), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.error, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body too large: the limit is {limit} bytes"
        elif status == 404:
            message = f"no such endpoint: {request.method} {request.path} (the API is in /openapi.json)"
        elif status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        response, code = error_response(status, message)
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
