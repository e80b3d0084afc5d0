"""Every package a component's code imports is declared in that component's extra of pyproject.toml.

A component is what one image runs: its entry modules and every first-party module they import, at the top
or inside a function (a lazy import fails just as hard in an image that lacks the package, only later). The
third-party modules found that way must each come from a distribution the component's extras declare
directly (or through ``sentiflow[...]`` and the base dependencies): a package that arrives only as another
package's dependency can disappear with that dependency's next release.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"sentiflow", "serving"}

#: Each image's extras and the entry points of what it runs (docker-compose.yaml, k8s/, the Dockerfiles).
COMPONENTS: dict[str, tuple[tuple[str, ...], list[str | Path]]] = {
    "model-server": (
        ("serve",),
        [
            "serving.app",
            "serving.store.migrate",
            "sentiflow.security.mlflow_users",
            Path("serving/gunicorn.conf.py"),
        ],
    ),
    # the catalogue finds the families' code (importlib), nothing imports it: each family file is an entry
    "trainer": (
        ("train",),
        [
            "sentiflow.train.__main__",
            "sentiflow.train.cli",
            *sorted(Path("include/sentiflow/families").rglob("*.py")),
        ],
    ),
    "airflow": (
        ("airflow",),
        [
            *sorted(Path("dags").rglob("*.py")),
            *sorted(Path("plugins").rglob("*.py")),
            Path("docker/airflow/connections.py"),
            "sentiflow.security.credentials_check",
        ],
    ),
    "mlflow": (
        ("mlflow",),
        [
            Path("include/sentiflow/security/credentials_check.py"),
            Path("include/sentiflow/security/mlflow_auth_ini.py"),
        ],
    ),
}


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for base in (REPO_ROOT / "include", REPO_ROOT):
        path = base.joinpath(*parts)
        if path.with_suffix(".py").is_file():
            return path.with_suffix(".py")
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
    return None


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return names


def third_party_imports(entries: list[str | Path]) -> dict[str, Path]:
    """Top-level third-party module -> one first-party file that imports it, over the entries' closure."""
    seen: set[Path] = set()
    found: dict[str, Path] = {}
    todo: list[str | Path] = list(entries)
    while todo:
        item = todo.pop()
        path = REPO_ROOT / item if isinstance(item, Path) else _module_file(item)
        if path is None or path in seen:
            continue
        seen.add(path)
        if isinstance(item, str):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            parts = item.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FIRST_PARTY:
                todo.append(name)
            elif top not in sys.stdlib_module_names and top not in {"__future__", "dags", "plugins"}:
                found.setdefault(top, path.relative_to(REPO_ROOT))
    return found


def declared(extras: tuple[str, ...]) -> set[str]:
    """Canonical names of the distributions the extras declare, with the base dependencies and the
    ``sentiflow[...]`` extras they name."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    todo = [Requirement(r) for r in project["dependencies"]]
    done: set[str] = set()
    todo += [Requirement(f"sentiflow[{extra}]") for extra in extras]
    while todo:
        req = todo.pop()
        if canonicalize_name(req.name) == "sentiflow":
            for extra in req.extras - done:
                done.add(extra)
                todo += [Requirement(r) for r in project["optional-dependencies"][extra]]
            continue
        names.add(canonicalize_name(req.name))
    return names


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_every_import_is_declared_in_the_components_extras(component: str) -> None:
    extras, entries = COMPONENTS[component]
    distributions = packages_distributions()
    names = declared(extras)
    missing = {}
    for module, where in third_party_imports(entries).items():
        candidates = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not candidates & names:
            missing[module] = f"{where} (from {sorted(candidates)})"
    assert not missing, f"{component}: imported but not declared in {extras}: {missing}"


def test_the_walk_sees_lazy_and_known_imports() -> None:
    """The closure is what the check relies on: it must reach imports inside functions and across modules."""
    server = third_party_imports(COMPONENTS["model-server"][1])
    assert {"apispec", "flask_limiter", "itsdangerous", "filelock", "yaml", "alembic"} <= set(server)
    assert "airflow" not in server  # the server image has no Airflow, and nothing of it needs one
    assert "scipy" in third_party_imports(COMPONENTS["trainer"][1])  # imported inside the fit's function
    assert declared(("serve",)) >= {"torch", "mlflow", "boto3"}  # via sentiflow[model] and the base


def test_a_missing_declaration_is_reported() -> None:
    """The serve extra without apispec (what the shipped image once lacked) fails the check."""
    names = declared(("serve",)) - {"apispec"}
    distributions = packages_distributions()
    found = third_party_imports(COMPONENTS["model-server"][1])
    undeclared = [m for m in found if not {canonicalize_name(d) for d in distributions.get(m, [m])} & names]
    assert undeclared == ["apispec"]
