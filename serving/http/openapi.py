"""The OpenAPI document, generated from the routes the app registers and the pydantic models they declare.

Pattern for every route (the one thing to copy when adding one)::

    @bp.post("/thing")
    @openapi.document(
        summary="Do the thing",
        body=ThingRequest,                       # pydantic request model (JSON body), optional
        query=ThingQuery,                        # pydantic model of the query parameters, optional
        responses={200: ThingResponse, 404: ErrorBody, 503: ErrorBody},
        links={200: {"Next": {"operationId": "api_other", "requestBody": {"id": "$response.body#/id"}}}},
    )
    def thing(): ...

``build_spec(app)`` walks ``app.url_map``: every rule becomes a path (``<int:id>`` → ``{id}``), each
method an operation; the models' JSON schemas (pydantic's own ``model_json_schema``) become
``components/schemas``. A route without ``@document`` still appears, marked ``x-undocumented``, and the
test suite fails for any such route outside the web page's own routes — so a new route cannot be
missing from the document. apispec (marshmallow-code's OpenAPI builder, the most used and most recently
released of the candidates) assembles and validates the document's structure.

Every operation also gets a ``default`` response (``ErrorBody``): any 4xx/5xx of the API has that shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from flask import Flask
from pydantic import BaseModel

OPENAPI_VERSION = "3.1.0"
ATTRIBUTE = "_sentiflow_openapi"
#: A response that is not JSON: ``(media type(s), description)``.
Raw = tuple[tuple[str, ...], str]
#: A JSON response: one model, or a list of the models it may be (``anyOf``).
Response = type[BaseModel] | list[type[BaseModel]] | Raw | str
_CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}}


def document(
    *,
    summary: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, Response],
    description: str | None = None,
    links: dict[int, dict[str, Any]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach what the OpenAPI document says about a view; changes nothing at run time."""

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(
            view,
            ATTRIBUTE,
            {
                "summary": summary,
                "description": description or (view.__doc__ or "").strip() or None,
                "body": body,
                "query": query,
                "responses": responses,
                "links": links or {},
            },
        )
        return view

    return mark


class _Builder:
    def __init__(self, title: str, version: str) -> None:
        self.spec = APISpec(title=title, version=version, openapi_version=OPENAPI_VERSION)
        self._schemas: set[str] = set()

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        """Register ``model`` (and the models it nests) as components; return a ``$ref`` to it."""
        if model.__name__ not in self._schemas:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                if name not in self._schemas:
                    self._schemas.add(name)
                    self.spec.components.schema(name, sub)
            self._schemas.add(model.__name__)
            self.spec.components.schema(model.__name__, schema)
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def response(self, response: Response) -> dict[str, Any]:
        if isinstance(response, str):
            return {"description": response}
        if isinstance(response, tuple):
            media_types, description = response
            return {"description": description, "content": {m: {"schema": {}} for m in media_types}}
        models = response if isinstance(response, list) else [response]
        refs = [self.ref(m) for m in models]
        descriptions = [((m.__doc__ or "").strip().splitlines() or [m.__name__])[0] for m in models]
        return {
            "description": " Or: ".join(descriptions),
            "content": {"application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}},
        }

    def query_parameters(self, query: type[BaseModel]) -> list[dict[str, Any]]:
        schema = query.model_json_schema()
        required = set(schema.get("required", []))
        return [
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _query_schema(prop),
                **({"description": prop["description"]} if "description" in prop else {}),
            }
            for name, prop in schema.get("properties", {}).items()
        ]

    def operation(self, endpoint: str, view: Callable[..., Any], method: str) -> dict[str, Any]:
        meta = getattr(view, ATTRIBUTE, None)
        if meta is None:
            doc = (view.__doc__ or endpoint).strip().splitlines()[0]
            return {
                "operationId": f"{endpoint}.{method}",
                "summary": doc,
                "x-undocumented": True,
                "responses": {"default": {"description": "not described by a model"}},
            }
        op: dict[str, Any] = {
            "operationId": endpoint.replace(".", "_"),
            "summary": meta["summary"],
            "tags": [endpoint.split(".")[0]],
            "responses": {str(s): self.response(r) for s, r in meta["responses"].items()},
        }
        op["responses"].setdefault("default", self.response(ErrorBody))
        for status, links in meta["links"].items():  # OpenAPI links: what a client may call next
            op["responses"][str(status)]["links"] = links
        if meta["description"]:
            op["description"] = meta["description"]
        if meta["query"] is not None:
            op["parameters"] = self.query_parameters(meta["query"])
        if meta["body"] is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self.ref(meta["body"])}},
            }
        return op


def _query_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without pydantic's ``null`` branch of an optional field: a query string has
    no null (absent is the only "none"), and a document allowing one would promise what no request can say."""
    schema = {k: v for k, v in prop.items() if k not in ("title", "description")}
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """Werkzeug's ``/a/<int:id>`` → ``/a/{id}`` and its path parameters."""
    params = []
    for match in _CONVERTER.finditer(rule):
        schema = _TYPES.get(match["conv"] or "", {"type": "string"})
        params.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _CONVERTER.sub(lambda m: "{" + m["name"] + "}", rule), params


def build_spec(app: Flask, *, title: str = "sentiflow model server", version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route ``app`` registers (HEAD and OPTIONS left out)."""
    builder = _Builder(title, version)
    builder.ref(ErrorBody)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        path, params = openapi_path(rule.rule)
        view = app.view_functions[rule.endpoint]
        entry = paths.setdefault(path, {"parameters": params} if params else {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            entry[method.lower()] = builder.operation(rule.endpoint, view, method.lower())
    for path, operations in paths.items():
        params = operations.pop("parameters", None)
        builder.spec.path(path=path, operations=operations, parameters=params)
    return builder.spec.to_dict()


class ErrorBody(BaseModel):
    """Every error of the API: a slug, a message that names the problem, the HTTP status."""

    error: str
    message: str
    status: int
    request_id: str | None = None
