"""Bearer-token checks, compared in constant time, one token per job: the admin token (deploy, every detail of
the read-only views), the reviewer token (the feedback review queue, its export and import) and the metrics
token (Prometheus's scrape of ``/metrics``). The admin token reads no feedback; the reviewer token releases
nothing."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import request

from serving.extension import server
from serving.http.errors import ApiError
from serving.production import secret_value


def _given() -> str | None:
    """The bearer token of this request, or None without a well-formed ``Authorization`` header."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def _matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def is_admin() -> bool:
    """Whether this request carries the admin token: the read-only views then show their internals (host
    names, load errors, run ids, dataset URIs, why the model is not ready)."""
    given = _given()
    return given is not None and _matches(given, secret_value(server().settings.admin_token))


def _guard(*settings: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view that answers 401 unless the bearer token is the value of one of ``settings`` (``ServerSettings``
    field names); unset ones accept nothing, and with none set the endpoint is disabled."""

    def check() -> None:
        values = {f"SENTIFLOW_SERVER_{name.upper()}": getattr(server().settings, name) for name in settings}
        configured = [secret_value(value) for value in values.values() if secret_value(value)]
        if not configured:
            raise ApiError(401, f"this endpoint is disabled: the server has no {' or '.join(values)}")
        given = _given()
        if given is None:
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        if not any(_matches(given, expected) for expected in configured):
            raise ApiError(401, "invalid bearer token")

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check()
            return view(*args, **kwargs)

        return wrapper

    return decorate


#: The admin endpoints: deploy, deploy status.
require_admin = _guard("admin_token")
#: The review endpoints: the queue, feedback export and import (``SENTIFLOW_SERVER_REVIEWER_TOKEN`` only).
require_reviewer = _guard("reviewer_token")
#: ``/metrics``: Prometheus's own token (``SENTIFLOW_SERVER_METRICS_TOKEN``), or the admin token.
require_metrics = _guard("metrics_token", "admin_token")
