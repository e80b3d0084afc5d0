"""The catalogue of model families: ``ModelFamily`` and the lookup of the folders of ``sentiflow.families``.

A family is what differs between, say, a fine-tuned transformer and a TF-IDF baseline (``ModelFamily``'s
fields); everything else (snapshots, metrics, artifacts, selection, serving) is shared and family-agnostic.
Each family is one folder of ``sentiflow.families`` (or of a package named in
``SENTIFLOW_TRAIN_FAMILY_PACKAGES``) whose ``__init__`` defines ``FAMILY = ModelFamily(...)``; ``families()``
imports them all by name, cheaply: an entry names its training and its classifier as ``"module:name"``,
imported when used. This catalogue sits low (training's CLI, the pyfunc loader, the DAGs and the server read
it) while the families sit high (their training imports ``sentiflow.train``): nothing low imports a family
directly. ``docs/DEVELOPING.md`` shows how to add one.
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

from sentiflow.settings.components import TrainingSettings

#: The package whose folders are the families shipped with sentiflow.
FAMILIES_PACKAGE = "sentiflow.families"


class UnknownFamilyError(ValueError):
    """A family name that no folder of the catalogue's packages defines."""


@dataclass(frozen=True)
class ModelFamily:
    """One model family: the single entry that training, the DAGs, the pyfunc loader and serving read."""

    #: The ``model_family`` tag of its runs and the ``family`` of its classifiers (``names.FAMILY_*``).
    name: str
    #: Its parameters; the CLI validates its JSON and flags into the typed object ``train`` takes.
    params: type[BaseModel]
    #: ``"module:function"``, imported when a run starts: ``function(manifest_uri, params,
    #: register_model=..., registered_model_name=...) -> TrainResult`` (``train``).
    training: str
    #: ``"module:Class"``, its ``TextClassifier`` (``modeling.base``), imported when a model loads:
    #: ``Class.load(folder, label_names)`` is the inverse of ``classifier.save(folder)`` (``load``).
    classifier: str
    #: What a served copy of the logged pyfunc needs beyond sentiflow, pandas and numpy.
    pip_requirements: tuple[str, ...] = ()
    #: The runtime the model server reports in ``GET /model`` for this family's models.
    serving_runtime: str = "python"
    #: Modules a replica imports to load this family's models; the gunicorn master imports them before it
    #: forks (``SENTIFLOW_SERVER_PRELOAD_LIBRARIES``), so no worker pays them at its first load of one.
    serving_modules: tuple[str, ...] = ()
    #: The pipeline trigger form's fields of this family (pydantic models, one form group each).
    form: tuple[type[BaseModel], ...] = ()
    #: The boolean form field that has the pipeline train this family.
    switch: str = ""
    #: ``params_from_form(forms, seed) -> params``: its params from its ``form`` groups, validated from a
    #: run's params in ``form`` order, and the run's seed.
    params_from_form: Callable[[list[Any], int], BaseModel] | None = None
    #: ``"module:function"``: ``function(classifier, folder)`` adds the family's own files to a model's
    #: folder before it is signed and logged (``ship``).
    shipping: str | None = None
    #: ``"module:function"``: ``function(classifier, runtime, cache_dir, *, threads, max_prob_diff,
    #: max_batch_tokens)`` readies a loaded classifier for a replica: the one it serves on the server's
    #: ``runtime``, raising where that runtime cannot serve it (``serve``). None: served as loaded.
    serving: str | None = None
    #: Whether the DAG may run its training in the GPU pod (``train_backend=kubernetes``).
    gpu: bool = False
    #: The Airflow task id of its local training task in the DAGs.
    task_id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.task_id:
            object.__setattr__(self, "task_id", f"train_{self.name}")

    @property
    def train(self) -> Callable[..., Any]:
        """Its ``training`` function, imported: it trains the family on a snapshot."""
        return _resolve(self.training)

    def load(self, folder: Path, label_names: list[str]) -> Any:
        """A saved classifier of this family, back from its folder."""
        return _resolve(self.classifier).load(folder, label_names)

    def ship(self, classifier: Any, folder: Path) -> None:
        """The family's own files into a model's folder, where it has any (``shipping``)."""
        if self.shipping is not None:
            _resolve(self.shipping)(classifier, folder)

    def serve(self, classifier: Any, runtime: str, cache_dir: Path, **limits: Any) -> Any:
        """The classifier a replica serves on ``runtime``: the family's ``serving`` hook, or itself."""
        if self.serving is None:
            return classifier
        return _resolve(self.serving)(classifier, runtime, cache_dir, **limits)


def _resolve(reference: str) -> Any:
    """The object ``"module:name"`` names: the family's heavy code loads only when it is used."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@cache
def families() -> dict[str, ModelFamily]:
    """Every family, by name, in module-name order (a fixed order for the DAG's tasks and the CLI)."""
    found: dict[str, ModelFamily] = {}
    for package_name in (FAMILIES_PACKAGE, *TrainingSettings().family_packages):
        package = importlib.import_module(package_name)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            entry = getattr(importlib.import_module(f"{package_name}.{module.name}"), "FAMILY", None)
            if isinstance(entry, ModelFamily):
                if entry.name in found:
                    raise RuntimeError(f"model family {entry.name!r} is defined twice ({package_name})")
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
