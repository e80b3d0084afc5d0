"""The gunicorn master's library preload: every family's serving modules, each a module that imports."""

from __future__ import annotations

import importlib

from sentiflow.families.catalogue import families
from serving.process import preloaded_modules


def test_the_preload_covers_every_familys_serving_modules_and_each_imports():
    modules = preloaded_modules()
    assert modules[0] == "mlflow.pyfunc"
    for family in families().values():
        assert family.serving_modules, f"family {family.name} names no serving modules"
        assert set(family.serving_modules) <= set(modules)
    for name in modules:  # a misspelt name would only log a warning in the master
        importlib.import_module(name)
