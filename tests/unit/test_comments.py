"""Comments and docstrings say why, in the present tense: none cites an issue number.

The reason for a line belongs beside it; the story of how it came to be is in git. Read from the source:
every ``#`` comment (``tokenize``) and every string that stands as a statement (docstrings, attribute
docstrings) of the library, the model server, the DAGs and the plugins.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ("include", "serving", "dags", "plugins")

#: "issue 12", "Issues 3 and 4", "issue #12", "#31", "PR 7"; an upstream reference (``owner/repo#123``) and
#: an HTML entity (``&#39;``) are not ours.
ISSUE_REFERENCE = re.compile(r"\b(?:issues?|PR)\s+#?\d+|(?<![\w/&])#\d+\b", re.IGNORECASE)


def prose(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every comment and every statement-level string of ``source``."""
    found = [
        (token.start[0], token.string.lstrip("#"))
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        value = node.value if isinstance(node, ast.Expr) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.append((node.lineno, value.value))
    return found


def issue_references(source: str) -> list[tuple[int, str]]:
    return [(line, m.group(0)) for line, text in prose(source) for m in ISSUE_REFERENCE.finditer(text)]


def test_no_comment_or_docstring_cites_an_issue():
    files = [path for tree in TREES for path in sorted((ROOT / tree).rglob("*.py"))]
    assert len(files) > 100
    found = [
        f"{path.relative_to(ROOT)}:{line}: {ref}"
        for path in files
        for line, ref in issue_references(path.read_text())
    ]
    assert not found, found


def test_the_check_finds_issue_references_and_leaves_code_alone():
    source = '''"""Workers never create a table (issue
21)."""

X = 1  # see #31
ENTITY = "&#39;"  # an apostrophe
#: Faster since PR 7, pytorch/pytorch#138199 is upstream.
Y = "issue 12"
'''
    assert issue_references(source) == [(4, "#31"), (6, "PR 7"), (1, "issue\n21")]
