"""Regenerate the generated parts of README.md (the configuration table). Run by `make docs`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from sentiflow.config_doc import markdown_table  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def render(readme: str) -> str:
    block = f"{START}\n{markdown_table()}\n{END}"
    return re.sub(rf"{re.escape(START)}.*?{re.escape(END)}", lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(render(path.read_text()))
