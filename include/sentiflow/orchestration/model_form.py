"""Airflow trigger-form ``Param``s generated from a pydantic model: one definition per parameter.

The idea of transformers' ``HfArgumentParser`` (a dataclass becomes the command line), applied to Airflow's
trigger form: each field's title, description, type, bounds and default come from the model's JSON schema,
so the form cannot drift from the model that validates the values (``sentiflow.train.cli`` does the same
for the command line). Airflow checks a trigger's ``conf`` against these schemas when it creates the run.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from airflow.sdk import Param
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

#: The JSON-schema keywords of a field that Airflow's form renders or checks; pydantic's own keys (``title``,
#: ``default``) are passed separately, anything else (``$ref``, nested objects) is refused.
SCHEMA_KEYS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "examples",
)


def field_schema(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """One property of a pydantic JSON schema as the flat schema Airflow's form renders.

    pydantic writes ``X | None`` as ``anyOf: [X, null]``; the form wants ``type: ["null", X]`` with X's
    bounds beside it, which is the same constraint (JSON schema applies numeric bounds to numbers only).
    """
    branches = prop.get("anyOf")
    if branches is not None:
        others = [b for b in branches if b.get("type") != "null"]
        if len(others) != 1 or len(branches) != 2 or "type" not in others[0]:
            raise ValueError(f"field {name!r}: only `X | None` unions can be a form field, got {branches}")
        schema = {k: v for k, v in others[0].items() if k in SCHEMA_KEYS}
        schema["type"] = ["null", others[0]["type"]]
        if "enum" in schema:
            schema["enum"] = [None, *schema["enum"]]
    else:
        schema = {k: v for k, v in prop.items() if k in SCHEMA_KEYS}
    if "type" not in schema and "enum" not in schema:
        raise ValueError(f"field {name!r} has no JSON type the trigger form can render: {prop}")
    return schema


def params_from_model(model: type[BaseModel], section: str) -> dict[str, Param]:
    """A ``Param`` per field of ``model``, in field order, under the form section ``section``.

    Defaults come from an instance, so ``default_factory`` fields (settings-driven defaults such as
    ``SENTIFLOW_DEFAULT_MODEL_NAME``) are read when the DAG is parsed. A required field (no default) becomes a
    ``Param`` without a value, which the trigger form asks for; Airflow allows such params only in a DAG
    without a schedule.
    """
    properties = model.model_json_schema()["properties"]
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    # model_construct: the defaults alone, without the required values an instance would need
    instance = model.model_construct() if required else model()
    defaults = instance.model_dump(mode="json", exclude=required)
    return {
        name: Param(
            **({} if name in required else {"default": defaults[name]}),
            description=prop.get("description"),
            title=prop.get("title", name),
            section=section,
            **field_schema(name, prop),
        )
        for name, prop in properties.items()
    }


def form_params(*sections: tuple[type[BaseModel], str]) -> dict[str, Param]:
    """The ``Param``s of several models, each under its form section, in order; a name may appear once."""
    out: dict[str, Param] = {}
    for model, section in sections:
        params = params_from_model(model, section)
        twice = sorted(set(params) & set(out))
        if twice:
            raise ValueError(f"{model.__name__} repeats form field(s) {twice}")
        out.update(params)
    return out


def _admits_none(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(annotation)


def model_from_params(model: type[M], params: Mapping[str, Any]) -> M:
    """``model`` from a run's params: its own fields only (absent ones keep the model's defaults).

    The UI form sends ``""`` for an emptied optional field; such a field becomes None, once, here.
    """
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name not in params:
            continue
        value = params[name]
        values[name] = None if value == "" and _admits_none(field.annotation) else value
    return model.model_validate(values)
