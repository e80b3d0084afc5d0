"""Type strictness of the library and the server at two commits: how many ``Any`` ``include/`` and
``serving/`` spell out, and how many errors mypy reports under the project's configuration and under
stricter flags.

Each commit's checked folders and ``pyproject.toml`` are exported (``git archive``) into a temporary folder
and checked there with this venv's mypy, so both commits meet the same mypy and the same libraries.

    .venv/bin/python benchmarks/type_strictness.py --before e7c3f00
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from _common import BENCH_DIR, record

REPO = BENCH_DIR.parent
#: What ``grep -rnoE '\bAny\b' include serving --include=*.py | wc -l`` counts.
ANY = re.compile(r"\bAny\b")
COUNTED = ("include", "serving")
EXPORTED = ("include", "serving", "dags", "plugins", "pyproject.toml")
#: The project's own configuration (``[tool.mypy]``), then each flag on top of it.
FLAGS: dict[str, list[str]] = {
    "config": [],
    "disallow_untyped_defs": ["--disallow-untyped-defs"],
    "strict": ["--strict"],
}


def export(commit: str, into: Path) -> str:
    """The commit's checked files under ``into``; its short hash."""
    archive = subprocess.run(["git", "archive", commit, *EXPORTED], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def any_count(tree: Path) -> int:
    return sum(len(ANY.findall(p.read_text())) for folder in COUNTED for p in (tree / folder).rglob("*.py"))


def mypy_errors(tree: Path, flags: list[str]) -> int:
    out = subprocess.run([sys.executable, "-m", "mypy", *flags], cwd=tree, capture_output=True, text=True)
    found = re.search(r"Found (\d+) errors?", out.stdout)
    if found:
        return int(found.group(1))
    if out.returncode == 0:
        return 0
    raise RuntimeError(f"mypy failed in {tree}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def measure(commit: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="type-strictness-") as tmp:
        tree = Path(tmp)
        short = export(commit, tree)
        started = time.perf_counter()
        errors = {name: mypy_errors(tree, flags) for name, flags in FLAGS.items()}
        return {
            "commit": short,
            "any_count": any_count(tree),
            "mypy_errors": errors,
            "mypy_wall_s": round(time.perf_counter() - started, 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--after", default="HEAD")
    args = parser.parse_args()
    before, after = measure(args.before), measure(args.after)
    table = [("`Any` in include/ and serving/", before["any_count"], after["any_count"])]
    errors = before["mypy_errors"], after["mypy_errors"]
    table += [(f"mypy errors, {name}", errors[0][name], errors[1][name]) for name in FLAGS]
    rows = "\n".join(f"| {what} | {b} | {a} |" for what, b, a in table)
    markdown = (
        f"Before: {before['commit']}, after: {after['commit']}. mypy's flags go on top of the project's "
        "`[tool.mypy]` (`config`: the configuration alone); both trees checked by the same mypy.\n\n"
        f"| measure | before | after |\n| --- | ---: | ---: |\n{rows}"
    )
    record("type_strictness", {"before": before, "after": after}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
