"""Regenerate the generated parts of the docs: README.md's configuration table (from the settings classes),
docs/DEVELOPING.md's module map (from each module's docstring) and docs/pipeline.md's table of the gate's
policy (from ``GatePolicy``). Run by `make docs`."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from sentiflow.gate.policy import GatePolicy  # noqa: E402
from sentiflow.settings.reference import markdown_table  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
MAP_START, MAP_END = "<!-- module-map:start -->", "<!-- module-map:end -->"
POLICY_START, POLICY_END = "<!-- gate-policy:start -->", "<!-- gate-policy:end -->"
#: The packages whose modules the map lists, and how a module's path is shown.
MAPPED = ((ROOT / "include" / "sentiflow", "include/sentiflow/"), (ROOT / "serving", "serving/"))


def _replace(text: str, start: str, end: str, body: str) -> str:
    block = f"{start}\n{body}\n{end}"
    return re.sub(rf"{re.escape(start)}.*?{re.escape(end)}", lambda _: block, text, flags=re.S)


def render(readme: str) -> str:
    return _replace(readme, START, END, markdown_table())


def summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line (what the module holds, in its words)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")


def module_map() -> str:
    rows = ["| module | holds |", "| --- | --- |"]
    for package, shown in MAPPED:
        for path in sorted(package.rglob("*.py")):
            if path.name != "__init__.py" and "__pycache__" not in path.parts:
                rows.append(f"| `{shown}{path.relative_to(package).as_posix()}` | {summary(path)} |")
    return "\n".join(rows)


def render_developing(text: str) -> str:
    return _replace(text, MAP_START, MAP_END, module_map())


def policy_table() -> str:
    """One row per field of the gate's policy: the trigger parameter, its default, what it does."""
    rows = ["| parameter | default | meaning |", "| --- | --- | --- |"]
    for name, field in GatePolicy.model_fields.items():
        default = "" if field.default is None else f"`{field.default}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {default} | {meaning} |")
    return "\n".join(rows)


def render_pipeline(text: str) -> str:
    return _replace(text, POLICY_START, POLICY_END, policy_table())


if __name__ == "__main__":
    for path, fn in (
        (ROOT / "README.md", render),
        (ROOT / "docs" / "DEVELOPING.md", render_developing),
        (ROOT / "docs" / "pipeline.md", render_pipeline),
    ):
        path.write_text(fn(path.read_text()))
