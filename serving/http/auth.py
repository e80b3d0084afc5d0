"""Bearer-token checks, compared in constant time: one token per job.

The admin token releases (``/deploy``, ``/deploy/status``); the reviewer token reads and reviews feedback
(``/feedback/review``, ``/feedback/export``, ``/feedback/import``). Neither opens the other's endpoints.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import request
from pydantic import SecretStr

from serving.extension import server
from serving.http.errors import ApiError


def _check(secret: SecretStr | None, setting: str, what: str) -> None:
    expected = secret.get_secret_value() if secret else ""
    if not expected:
        raise ApiError(401, f"{what} endpoints are disabled: the server has no SENTIFLOW_SERVER_{setting}")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, f"invalid bearer token for the {what} endpoints")


def require_admin(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check(server().settings.admin_token, "ADMIN_TOKEN", "admin")
        return view(*args, **kwargs)

    return wrapper


def require_reviewer(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check(server().settings.reviewer_token, "REVIEWER_TOKEN", "reviewer")
        return view(*args, **kwargs)

    return wrapper
