"""The layers of the whole tree (docs/DEVELOPING.md, "Layers and where a change goes"): no import circles, no
import that runs back up or sideways, and the model server apart from the pipeline.

Read from the source (every ``import``/``from`` statement, at any depth), so a lazy import cannot hide a
dependency. Between two parts, imports go strictly down: a part imports only parts of a lower rank, never
one of its own rank. The library (``include/sentiflow``) never imports the applications built on it
(``serving/``, ``dags/``, ``plugins/``); the model server imports nothing of the pipeline's
(``SERVER_NEVER_IMPORTS``). ``importlib`` lookups (the family registry finding ``sentiflow.families``) are not
imports and are the one sanctioned way down-to-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Where each top-level package lives.
TREES = {
    "sentiflow": ROOT / "include" / "sentiflow",
    "serving": ROOT / "serving",
    "dags": ROOT / "dags",
    "plugins": ROOT / "plugins",
}

#: Packages that group modules by purpose (what they are about) rather than by layer: each of their modules is
#: a part of its own, ranked on its own, so the security helpers can sit below the registry and above it.
PURPOSE_PACKAGES = {"localstack", "security", "settings"}
#: Modules of a layered package that form a part of their own: the family catalogue sits at the bottom, so
#: every layer (the model server included) finds families through it, while the families sit high.
OWN_PARTS = {"families.catalogue"}
#: The modules of a family's folder that serve its models (``families/<name>/model.py``, ...): one part,
#: below training, the only part of a family the model server may import.
SERVING_RUNTIME = {"model", "onnx_runtime"}

#: Rank of each part of the library (``sentiflow.<part>``, or ``<purpose package>.<module>``).
LIBRARY_RANKS = {
    # the purpose packages themselves (their ``__init__``) hold only their docstring
    "localstack": 1,
    "security": 1,
    "settings": 1,
    "localstack.demo": 8,
    "orchestration": 8,
    "localstack.airflow_standalone": 7,
    "families": 7,
    "families.serving": 6,
    "gate": 7,
    "settings.reference": 6,
    "localstack.offline": 6,
    "train": 6,
    "cli": 5,
    "feedback": 5,
    "localstack.stack": 5,
    "modeling": 5,
    "release": 5,
    "security.resign": 5,
    "security.s3_init": 5,
    "security.approval": 4,
    "data": 4,
    "security.signed_logging": 4,
    "security.stack_auth": 4,
    "serving_client": 3,
    "security.signing": 3,
    "localstack.demo_monitor": 2,
    "security.mlflow_users": 2,
    "registry": 2,
    "settings.server": 2,
    "storage": 2,
    "localstack.supervisor": 2,
    "settings.components": 1,
    "settings.cpu_quota": 1,
    "security.credentials_check": 1,
    "security.mlflow_auth": 1,
    "security.mlflow_auth_ini": 1,
    "names": 1,
    "progress": 1,
    "families.catalogue": 2,
}

#: Rank of each part of the applications; any of them may import any part of the library.
APPLICATION_RANKS = {
    "serving.gunicorn": 6,  # gunicorn.conf.py
    "serving.app": 5,
    "serving.http": 4,
    "serving.extension": 3,
    "serving.model": 2,
    "serving.store": 1,
    "serving.metrics": 1,
    "serving.releases": 1,
    "serving.production": 1,
    "serving.process": 1,
    "serving.prediction_ids": 1,
    "dags": 1,
    "plugins": 1,
}

#: What a model-server replica must never import: the pipeline's training, gate, release and orchestration,
#: and any family's own code (the server finds a family's model and runtime through ``families.catalogue``).
SERVER_NEVER_IMPORTS = {
    "families.serving",
    "gate",
    "orchestration",
    "release",
    "train",
    "families",
    "data",
    "localstack.demo",
    "localstack.airflow_standalone",
}


def module_name(path: Path) -> str:
    for package, folder in TREES.items():
        if path.is_relative_to(folder):
            parts = (package, *path.relative_to(folder).with_suffix("").parts)
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(f"{path} is outside {sorted(TREES)}")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in TREES}


def graph() -> dict[str, set[str]]:
    modules = {
        module_name(p): p
        for folder in TREES.values()
        for p in folder.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported not in TREES:
                targets.add(imported)
        edges[name] = targets
    return edges


def part(module: str) -> str:
    """``sentiflow.gate.judge``: ``gate``; ``serving.http.api``: ``serving.http``; ``dags.x``: ``dags``."""
    package, _, rest = module.partition(".")
    if package == "sentiflow":
        head, two = rest.split(".")[0], ".".join(rest.split(".")[:2])
        if head == "families" and rest.split(".")[-1] in SERVING_RUNTIME:
            return "families.serving"
        return two if head in PURPOSE_PACKAGES or two in OWN_PARTS else head
    if package == "serving":
        return f"serving.{rest.split('.')[0]}"
    return package


def is_library(module: str) -> bool:
    return module.split(".")[0] == "sentiflow"


def rank(module: str) -> int:
    return (LIBRARY_RANKS if is_library(module) else APPLICATION_RANKS)[part(module)]


def crossings() -> list[tuple[str, str]]:
    """Every import from one part into another."""
    return [
        (source, target)
        for source, targets in graph().items()
        for target in targets
        if source not in TREES and part(source) != part(target)
    ]


def test_every_part_of_the_tree_has_a_layer():
    parts = {(is_library(m), part(m)) for m in graph() if m not in TREES}
    missing = {p for lib, p in parts if p not in (LIBRARY_RANKS if lib else APPLICATION_RANKS)}
    assert not missing, f"give these a rank (and a place in docs/DEVELOPING.md): {sorted(missing)}"


def test_imports_between_parts_go_strictly_down():
    wrong = sorted(
        f"{source} -> {target}"
        for source, target in crossings()
        if is_library(source) == is_library(target) and rank(source) <= rank(target)
    )
    assert not wrong, wrong


def test_the_library_imports_no_application():
    wrong = sorted(f"{s} -> {t}" for s, t in crossings() if is_library(s) and not is_library(t))
    assert not wrong, wrong


def test_the_model_server_imports_nothing_of_the_pipeline():
    wrong = sorted(
        f"{s} -> {t}"
        for s, t in crossings()
        if s.startswith("serving.") and is_library(t) and part(t) in SERVER_NEVER_IMPORTS
    )
    assert not wrong, wrong


def test_no_import_circles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, circles


def test_the_checker_sees_lazy_imports_and_sideways_ones(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from sentiflow.orchestration import pod\n    import sentiflow.gate.judge\n"
    )
    assert imports_of(source) == {
        "sentiflow.orchestration",
        "sentiflow.orchestration.pod",
        "sentiflow.gate.judge",
    }
    # gate and families share a rank: an import between them is refused like an upward one
    assert rank("sentiflow.gate.judge") == rank("sentiflow.families.tfidf.training")
    assert part("serving.http.api") == "serving.http" and part("dags.sentiment_pipeline") == "dags"
    assert part("sentiflow.families.tfidf.model") == "families.serving" != part("sentiflow.families.tfidf")
