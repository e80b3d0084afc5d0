"""The README's configuration table, generated from the settings classes so that it cannot drift.

``python -m sentiflow.settings.reference`` prints it; a test checks README.md lists every variable.
"""

from __future__ import annotations

import importlib
import inspect
import json

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from sentiflow.localstack.stack import StackSettings

#: Modules whose settings classes users configure; each component keeps its own class (one prefix each).
SETTINGS_MODULES = (
    "sentiflow.settings.components",
    "sentiflow.settings.server",
    "sentiflow.security.mlflow_users",
    "sentiflow.orchestration.settings",
)


def settings_classes() -> list[type[BaseSettings]]:
    found: list[type[BaseSettings]] = []
    for module_name in SETTINGS_MODULES:
        module = importlib.import_module(module_name)
        classes = [
            obj
            for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, BaseSettings) and obj is not BaseSettings and obj.__module__ == module.__name__
        ]
        found.extend(sorted(classes, key=lambda cls: inspect.getsourcelines(cls)[1]))
    return [*found, StackSettings]


def env_names(cls: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(ENV_NAME, default, description) per field."""
    prefix = cls.model_config.get("env_prefix", "")
    rows = []
    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            shown = "(secret; local default)"
        elif default is None:
            shown = ""
        elif isinstance(default, dict | list):
            shown = json.dumps(default) if default else ""
        else:
            shown = str(default)
            if cls is StackSettings and name == "home":
                shown = ".stack"
        rows.append((f"{prefix}{name}".upper(), shown, field.description or ""))
    return rows


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for cls in settings_classes():
        for env, default, description in env_names(cls):
            default_cell = f"`{default}`" if default else ""
            lines.append(f"| `{env}` | {default_cell} | {description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
