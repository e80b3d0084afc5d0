"""Check responses against the served OpenAPI document: the shared helper of the API tests.

``SpecValidator(spec).problems(method, rule, status, content_type, body)`` lists how one response
departs from the document (undocumented path/method/status, wrong media type, body not matching the
schema). ``validate_every_response(app)`` hooks it into a Flask app so that every response a test
provokes is checked; the fixture that uses it asserts the list is empty at teardown.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, request
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from serving.http.openapi import build_spec, openapi_path

ROOT = "urn:sentiflow-openapi"


def _absolute_refs(value: Any) -> Any:
    """A schema cut out of the document, with its local ``#/...`` references pointing into the document."""
    if isinstance(value, dict):
        return {
            k: ROOT + v if k == "$ref" and isinstance(v, str) and v.startswith("#/") else _absolute_refs(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_absolute_refs(v) for v in value]
    return value


class SpecValidator:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource(contents=spec, specification=DRAFT202012)
        self.registry = Registry().with_resource(ROOT, resource)

    def _schema_validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        return Draft202012Validator(_absolute_refs(schema), registry=self.registry)

    def problems(self, method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
        """``path`` is the OpenAPI path (``/a/{id}``)."""
        where = f"{method.upper()} {path} → {status}"
        operation = self.spec["paths"].get(path, {}).get(method.lower())
        if operation is None:
            return [f"{where}: the operation is not in the document"]
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get("default")
        if response is None:
            return [f"{where}: status not documented"]
        content = response.get("content")
        if not content:
            return []
        media = content_type.split(";")[0].strip()
        if media not in content:
            return [f"{where}: media type {media!r} not among {list(content)}"]
        schema = content[media].get("schema") or {}
        if media != "application/json" or not schema:
            return []
        try:
            data = json.loads(body)
        except ValueError as exc:
            return [f"{where}: body is not JSON: {exc}"]
        errors = sorted(self._schema_validator(schema).iter_errors(data), key=str)
        return [f"{where}: {e.json_path}: {e.message}" for e in errors]


def validate_every_response(app: Flask) -> list[str]:
    """Check each response ``app`` sends against its own document; problems land in the returned list."""
    found: list[str] = []
    state: dict[str, SpecValidator] = {}

    @app.after_request
    def _check(response):
        if request.url_rule is None or request.method in ("HEAD", "OPTIONS"):
            return response
        if "v" not in state:
            state["v"] = SpecValidator(build_spec(app))
        path, _ = openapi_path(request.url_rule.rule)
        found.extend(
            state["v"].problems(
                request.method,
                path,
                response.status_code,
                response.content_type or "",
                response.get_data() if not response.direct_passthrough else b"",
            )
        )
        return response

    return found
