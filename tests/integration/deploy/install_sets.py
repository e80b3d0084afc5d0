"""Each image's install set, rebuilt here in a clean virtualenv the way its Dockerfile installs it.

No Docker engine here, so the image is rebuilt as far as its packages go: the Dockerfile's build stage copies
``pyproject.toml``, ``README.md`` and ``include/`` and installs ``.[EXTRA]`` under
``requirements/constraints.txt`` (CPU torch first where the extra has torch); this does the same with uv
from its warm cache (seconds) into a fresh venv that sees nothing of the suite's own ``.venv``. The runtime
stage's copies (``serving/`` at ``/app``, the MLflow entrypoint's helpers) are the tests' job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
#: Extra of pyproject.toml -> the Dockerfile that installs it.
DOCKERFILES = {
    "serve": "serving.Dockerfile",
    "train": "trainer.Dockerfile",
    "airflow": "airflow.Dockerfile",
    "mlflow": "mlflow.Dockerfile",
}


def dockerfile_extra(extra: str) -> str:
    """The extra the Dockerfile installs (``".[serve]"``, the wheel's ``[airflow]``), checked: ``extra``."""
    text = (DOCKER / DOCKERFILES[extra]).read_text()
    found = set(re.findall(r'(?:"\.|\.whl\))\[([a-z,]+)\]"', text))
    assert found == {extra}, f"{DOCKERFILES[extra]} installs {found}, not [{extra}]"
    assert "-c requirements/constraints.txt" in text or "-c /opt/sentiflow/constraints.txt" in text
    return extra


def _uv() -> str:
    uv = Path(sys.executable).parent / "uv"
    return str(uv) if uv.exists() else shutil.which("uv") or "uv"


def build(extra: str, folder: Path) -> Path:
    """A clean venv in ``folder`` with exactly what the Dockerfile of ``extra`` installs; returns its bin/."""
    dockerfile_extra(extra)
    src = folder / "src"  # the build stage's COPY: pyproject.toml, README.md, include/
    src.mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / "README.md", src)
    shutil.copytree(
        ROOT / "include", src / "include", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    venv = folder / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=300)  # noqa: E731
    run(_uv(), "venv", "-q", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    if "torch" in (DOCKER / DOCKERFILES[extra]).read_text():
        # the Dockerfiles take torch from the CPU index; here the same CPU build comes from pip's find-links
        links = [
            a for link in filter(None, [os.environ.get("PIP_FIND_LINKS")]) for a in ("--find-links", link)
        ]
        run(_uv(), "pip", "install", "-q", "--python", python, *links, "torch==2.13.0")
    run(
        _uv(), "pip", "install", "-q", "--python", python,
        "-c", str(ROOT / "requirements" / "constraints.txt"), f"{src}[{extra}]",
    )  # fmt: skip
    return venv / "bin"
