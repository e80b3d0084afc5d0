"""The library's layers (docs/DEVELOPING.md, "Layers and where a change goes"): no import circles, and no
import that runs back up — a lower layer never imports a higher one, not even inside a function.

Read from the source (every ``import``/``from`` statement, at any depth), so a lazy import cannot hide an
upward dependency. ``importlib`` lookups (the family registry finding ``sentiflow.families``) are not
imports and are the one sanctioned way down-to-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "include" / "sentiflow"

#: Rank of each top-level part of ``sentiflow``: a module may import only parts of a lower or equal rank.
RANKS = {
    "orchestration": 6,
    "demo": 6,
    "airflow_local": 5,
    "release": 5,
    "families": 5,
    "gate": 4,
    "train": 4,
    "feedback": 4,
    "cli": 4,
    "resign": 3,
    "data": 3,
    "offline": 3,
    "config_doc": 3,
    "s3_init": 3,
    "modeling": 2,
    "registry": 2,
    "storage": 2,
    "serving_client": 2,
    "demo_progress": 2,
    "signed_logging": 2,
    "approval": 2,
    "localstack": 2,
    "stack_auth": 2,
    "mlflow_users": 2,
    "signing": 1,
    "mlflow_auth": 1,
    "mlflow_auth_ini": 1,
    "credentials_check": 1,
    "family_registry": 1,
    "config": 1,
    "server_settings": 1,
    "supervisor": 1,
    "names": 1,
    "progress": 1,
    "processes": 1,
    "ports": 1,
    "cpu_quota": 1,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "sentiflow" or name.startswith("sentiflow.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "sentiflow":
                targets.add(imported)
        edges[name] = targets
    return edges


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_every_part_of_the_library_has_a_layer():
    parts = {part(m) for m in graph() if m != "sentiflow"}
    assert parts <= set(RANKS), f"give these a rank in RANKS (and docs/DEVELOPING.md): {parts - set(RANKS)}"


def test_no_import_runs_back_up_a_layer():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if source != "sentiflow" and RANKS[part(source)] < RANKS[part(target)]
    )
    assert not upward, upward


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


def test_the_checker_sees_lazy_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from sentiflow.orchestration import pod\n    import sentiflow.gate.judge\n"
    )
    assert imports_of(source) == {
        "sentiflow.orchestration",
        "sentiflow.orchestration.pod",
        "sentiflow.gate.judge",
    }
