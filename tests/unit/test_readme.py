"""README.md stays true: its configuration table is the settings classes', its commands exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "scripts"))


def test_configuration_table_is_generated_from_settings():
    from update_readme import render

    assert render(README) == README, "README's config table is stale: run `make docs`"


def test_module_map_is_generated_from_the_modules():
    from update_readme import render_developing

    developing = (ROOT / "docs" / "DEVELOPING.md").read_text()
    assert render_developing(developing) == developing, "DEVELOPING's module map is stale: run `make docs`"
    assert "`include/sentiflow/release/flow.py` | The release after selection" in developing


def test_gate_policy_table_is_generated_from_the_policy():
    from update_readme import render_pipeline

    pipeline = (ROOT / "docs" / "pipeline.md").read_text()
    assert render_pipeline(pipeline) == pipeline, "pipeline.md's gate policy table is stale: run `make docs`"
    assert "| `behaviour_tolerance` | `0` |" in pipeline


def test_every_settings_variable_is_documented():
    from sentiflow.settings.reference import env_names, settings_classes

    for cls in settings_classes():
        for env, _, _ in env_names(cls):
            assert f"`{env}`" in README, env


def test_make_targets_named_in_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    for target in set(re.findall(r"`make (?:-s )?([a-z-]+)`", README)):
        assert target in targets, target


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "| run the tests" in README and "`make test`" in README


def test_linked_docs_exist():
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)]+)\)", README):
        assert (ROOT / link).exists(), link


#: What the docs may name outside the repository: the offline copies README's "Offline machines" table lists.
OFFLINE_COPIES = set(re.findall(r"^\| \w+ \| `[^`]+` \| `(\.\./[^`]+)`", README, re.M))


def outside_references(path: Path, text: str) -> list[str]:
    """The places ``text`` (the file at ``path``) names a file outside the repository, or ``DESIGN.md``
    (the architecture is ``docs/architecture.md``): links resolved from the file's folder, other ``../``
    paths from the root (where the documented commands run)."""
    found = [f"{path.name}: names DESIGN.md" for _ in re.findall(r"DESIGN\.md", text)]
    links = {m.group(1) for m in re.finditer(r"\]\((\.\.?/[^)#\s]+)", text)}
    for link in links:
        if not (path.parent / link).resolve().is_relative_to(ROOT):
            found.append(f"{path.name}: links {link}")
    for ref in re.findall(r"(?<![\w./])(?<!\]\()(?:\.\./)+[\w./-]*|/work/[\w./-]*", text):
        if ref.rstrip("/.") not in OFFLINE_COPIES and not (ROOT / ref).resolve().is_relative_to(ROOT):
            found.append(f"{path.name}: names {ref}")
    return found


def test_the_docs_need_no_file_outside_the_repository():
    assert {"../shared/data/imdb", "../shared/models/all-MiniLM-L6-v2"} == OFFLINE_COPIES
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert ROOT / "docs" / "architecture.md" in pages
    found = [hit for page in pages for hit in outside_references(page, page.read_text())]
    assert not found, found


def test_the_outside_reference_check_finds_each_kind():
    page = ROOT / "docs" / "x.md"
    assert outside_references(page, "Read `../shared/DESIGN.md` first") == [
        "x.md: names DESIGN.md",
        "x.md: names ../shared/DESIGN.md",
    ]
    assert outside_references(page, "see [notes](../../notes.md)") == ["x.md: links ../../notes.md"]
    assert outside_references(page, "see /work/shared/x") == ["x.md: names /work/shared/x"]
    assert outside_references(page, "[ok](../README.md), `../shared/data/imdb`, [s](serving.md)") == []
