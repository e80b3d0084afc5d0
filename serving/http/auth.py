"""Bearer-token check for the admin endpoints (deploy, feedback export), compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import request

from serving.extension import server
from serving.http.errors import ApiError


def _check() -> None:
    settings = server().settings
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected:
        raise ApiError(401, "admin endpoints are disabled: the server has no SENTIFLOW_SERVER_ADMIN_TOKEN")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "invalid bearer token")


def require_admin(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check()
        return view(*args, **kwargs)

    return wrapper
