"""The gunicorn master's library preload: every family's serving modules, each a module that imports, and
the app's libraries, each one a worker imports at boot anyway."""

from __future__ import annotations

import importlib
import subprocess
import sys

from sentiflow.family_registry import families
from serving.process import APP_LIBRARIES, preloaded_modules
from tests.conftest import REPO_ROOT


def test_the_preload_covers_every_familys_serving_modules_and_each_imports():
    modules = preloaded_modules()
    assert modules[0] == "mlflow.pyfunc"
    for family in families().values():
        assert family.serving_modules, f"family {family.name} names no serving modules"
        assert set(family.serving_modules) <= set(modules)
    for name in modules:  # a misspelt name would only log a warning in the master
        importlib.import_module(name)


def test_every_app_library_is_one_a_worker_imports_anyway_and_none_starts_a_python_thread():
    """The list cannot rot into preloading what workers never use, nor leave the master with a Python thread
    that a fork would lose (a fresh interpreter: this one has imported everything already)."""
    probe = (
        "import importlib, sys, threading\n"
        "from serving.process import APP_LIBRARIES\n"
        "for name in APP_LIBRARIES: importlib.import_module(name)\n"
        "print(threading.active_count())\n"
        "import serving.app\n"
        "from mlflow import MlflowClient  # the follower's first alias poll (registry.mlflow_client)\n"
        "print(' '.join(n for n in APP_LIBRARIES if n not in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    assert out[0] == "1"  # only the main thread
    assert out[1:] in ([], [""]), f"preloaded but not imported by a worker: {out[1:]}"
    assert len(APP_LIBRARIES) == len(set(APP_LIBRARIES))
