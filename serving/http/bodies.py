"""Hostile-input-proof JSON bodies: a request body can only ever become a 4xx, never a 5xx.

Python's ``json`` module alone turns some valid JSON into a 500: arrays nested thousands deep raise
``RecursionError``, a 5,000-digit integer raises ``ValueError`` (the int digit limit), ``NaN`` and
``Infinity`` are accepted, and a lone UTF-16 surrogate (``"\\ud800"``) or a NUL byte parses into a
``str`` that SQLite's UTF-8 encoder and the tokenizers then reject deep inside a request.
``load_json_object`` parses with limits and rejects those with a message that names the field, before any
model or database sees the value; ``parse_body(Model)`` then validates the object against a request model
(``serving.http.schemas``). Query strings: ``serving.http.queries.parse_query``, the same for ``?a=b``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from serving.http.errors import ApiError

#: Deepest nesting of arrays/objects any body of this API needs is 2 (``{"texts": [...]}``); a little slack.
MAX_DEPTH = 8
#: Longest integer literal accepted (a registry version, a flag); longer ones are 422, not Python's limit.
MAX_INT_DIGITS = 32
JSON_MIMETYPES = ("application/json",)

T = TypeVar("T", bound=BaseModel)


def require_json_content_type() -> None:
    """415 unless ``Content-Type`` is JSON: stops cross-site ``text/plain`` form posts and guessing."""
    mimetype = request.mimetype or ""
    if mimetype not in JSON_MIMETYPES and not mimetype.endswith("+json"):
        raise ApiError(
            415,
            f"Content-Type must be application/json, got {request.content_type or 'none'!r}",
            error="unsupported_media_type",
        )


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise ApiError(
            422, f"integer literal of {len(literal)} digits: at most {MAX_INT_DIGITS}", error="number_too_big"
        )
    return int(literal)


def _constant(name: str) -> Any:
    raise ApiError(422, f"{name} is not a JSON number: send a finite number", error="invalid_number")


def _float(literal: str) -> float:
    if len(literal) > 64:
        raise ApiError(
            422, f"number literal of {len(literal)} characters: at most 64", error="number_too_big"
        )
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise ApiError(422, f"number {literal[:20]}… is out of range", error="number_too_big")
    return value


def _check_str(value: str, where: str) -> None:
    if "\x00" in value:
        raise ApiError(422, f"{where}: contains a NUL character (\\u0000)", error="invalid_text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            422,
            f"{where}: invalid Unicode at character {exc.start} (a lone UTF-16 surrogate); "
            "send well-formed UTF-8 text",
            error="invalid_text",
        ) from None


def check_tree(data: Any) -> None:
    """Walk the parsed value without recursion: depth limit, and every key and string well-formed."""
    stack: list[tuple[Any, str, int]] = [(data, "body", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _check_str(value, where)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise ApiError(
                    400, f"{where}: JSON nested deeper than {MAX_DEPTH} levels", error="too_deeply_nested"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_str(key, f"{where}: key {key[:40]!r}")
                stack.append((item, f"{key}" if where == "body" else f"{where}.{key}", depth + 1))


def load_json_object() -> dict[str, Any]:
    """The request body as a JSON object, or an ``ApiError`` (400/413/415/422) that names the problem."""
    require_json_content_type()
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, "empty body: send a JSON object")
    return json_object(raw, "the body")


def json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object (a body, a line of a JSONL upload), or a 400/422 naming ``what``."""
    try:
        data: Any = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise ApiError(400, f"{what}: JSON nested too deeply", error="too_deeply_nested") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"{what}: malformed JSON: {exc}", error="malformed_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"{what} must be a JSON object, got {type(data).__name__}")
    check_tree(data)
    return data


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one line, each naming its field (``texts.2: ...``)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_body(model: type[T]) -> T:
    """The JSON body as ``model``: 415 without a JSON content type, 400 for bytes that are not a sane JSON
    object (``load_json_object``), 422 for a wrong shape."""
    data = load_json_object()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, describe(exc), error="invalid_request") from exc
