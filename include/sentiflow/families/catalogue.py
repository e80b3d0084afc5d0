"""The registry of model families: ``ModelFamily`` and the lookup of the modules of ``sentiflow.families``.

One module per family, found by name, so adding a family is adding one module.

A family is what differs between, say, a fine-tuned transformer and a TF-IDF baseline: its parameters (a
pydantic model: the CLI and the trigger form are generated from it), how it is trained (a ``run`` that logs
one MLflow run and registers one version), how a logged model is loaded back, what a served copy needs
installed, and which runtime the model server reports. Everything else (snapshots, metrics, artifacts,
selection, serving) is shared and family-agnostic.

Each module of the package ``sentiflow.families`` defines ``FAMILY = ModelFamily(...)``; ``families()``
imports them all by name (cheaply: heavy imports stay inside ``run`` and ``load``). This registry sits low
(training's CLI, the pyfunc loader, the DAGs and the server read it) while the family modules sit high (they
import training and modeling): nothing low imports a family module directly. ``docs/DEVELOPING.md`` shows how
to add one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

#: The package whose modules are the families.
FAMILIES_PACKAGE = "sentiflow.families"


class UnknownFamilyError(ValueError):
    """A family name that no module of ``sentiflow.families`` defines."""


@dataclass(frozen=True)
class ModelFamily:
    """One model family: the single entry that training, the DAGs, the pyfunc loader and serving read."""

    #: The ``model_family`` tag of its runs and the ``family`` of its classifiers (``names.FAMILY_*``).
    name: str
    #: Its parameters; ``model_validate`` of the trigger's/CLI's JSON gives the typed object ``run`` takes.
    params: type[BaseModel]
    #: ``run(manifest_uri, params, register_model=..., registered_model_name=...) -> TrainResult``.
    run: Callable[..., Any]
    #: ``load(folder, label_names) -> TextClassifier`` (``modeling.base``, not imported: this registry sits
    #: below the families' code): the inverse of ``classifier.save(folder)``.
    load: Callable[[Path, list[str]], Any]
    #: What a served copy of the logged pyfunc needs beyond sentiflow, pandas and numpy.
    pip_requirements: tuple[str, ...] = ()
    #: The runtime the model server reports in ``GET /model`` for this family's models.
    serving_runtime: str = "python"
    #: Modules a replica imports to load this family's models; the gunicorn master imports them before it
    #: forks (``SENTIFLOW_SERVER_PRELOAD_LIBRARIES``), so no worker pays them at its first load of one.
    serving_modules: tuple[str, ...] = ()
    #: Whether the DAG may run its training in the GPU pod (``train_backend=kubernetes``).
    gpu: bool = False
    #: The Airflow task id of its local training task in the DAGs.
    task_id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.task_id:
            object.__setattr__(self, "task_id", f"train_{self.name}")

    def parse_params(self, raw: BaseModel | dict[str, Any] | str | None) -> BaseModel:
        """The family's typed params from an object, a dict, a JSON string (XCom) or nothing (defaults)."""
        if isinstance(raw, self.params):
            return raw
        if isinstance(raw, str):
            return self.params.model_validate_json(raw)
        return self.params.model_validate(raw or {})


@cache
def families() -> dict[str, ModelFamily]:
    """Every family, by name, in module-name order (a fixed order for the DAG's tasks and the CLI)."""
    found: dict[str, ModelFamily] = {}
    package = importlib.import_module(FAMILIES_PACKAGE)
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        entry = getattr(importlib.import_module(f"{FAMILIES_PACKAGE}.{module.name}"), "FAMILY", None)
        if isinstance(entry, ModelFamily):
            if entry.name in found:
                raise RuntimeError(f"model family {entry.name!r} is defined twice (module {module.name})")
            found[entry.name] = entry
    return found


def family(name: str) -> ModelFamily:
    """The family called ``name``; an error listing the known ones otherwise."""
    known = families()
    if name not in known:
        raise UnknownFamilyError(f"unknown model family {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def serving_runtime(name: str) -> str:
    """The runtime the model server reports for a model of family ``name`` (``unknown`` for none known)."""
    entry = families().get(name)
    return entry.serving_runtime if entry else "unknown"
