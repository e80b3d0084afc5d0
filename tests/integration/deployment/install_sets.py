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
import tomllib
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


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def build_mlserver(folder: Path) -> Path:
    """A clean venv with ``sentiflow[model]`` and ``requirements/mlserver.txt``, as docs/serving.md installs
    MLServer; returns its bin/.

    The project's pins hold for what a saved model is read with (the ``model`` extra's packages, NumPy and
    pandas); MLServer's own dependencies resolve as they would for a user (it caps several below our pins).
    """
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["model"]
    model_format = {_name(r) for r in extra} | {"numpy", "pandas"}
    pins = [
        line
        for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
        if "==" in line and _name(line) in model_format
    ]
    folder.mkdir(parents=True, exist_ok=True)
    constraints = folder / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    mlserver = ["-c", str(constraints), "-r", str(ROOT / "requirements" / "mlserver.txt")]
    return _install(folder, mlserver, "model")


def build(extra: str, folder: Path) -> Path:
    """A clean venv in ``folder`` with exactly what the Dockerfile of ``extra`` installs; returns its bin/."""
    dockerfile_extra(extra)
    torch_first = "torch" in (DOCKER / DOCKERFILES[extra]).read_text()
    return _install(folder, ["-c", str(ROOT / "requirements" / "constraints.txt")], extra, torch_first)


def _install(folder: Path, pip_args: list[str], extra: str, torch_first: bool = True) -> Path:
    src = folder / "src"  # the build stage's COPY: pyproject.toml, README.md, include/
    src.mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / "README.md", src)
    shutil.copytree(
        ROOT / "include", src / "include", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    venv = folder / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}

    def run(*args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"{' '.join(args)}\n{done.stderr[-3000:]}"

    run(_uv(), "venv", "-q", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    if torch_first:
        # the Dockerfiles take torch from the CPU index; here the same CPU build comes from pip's find-links
        links = [
            a for link in filter(None, [os.environ.get("PIP_FIND_LINKS")]) for a in ("--find-links", link)
        ]
        run(_uv(), "pip", "install", "-q", "--python", python, *links, "torch==2.13.0")
    run(_uv(), "pip", "install", "-q", "--python", python, *pip_args, f"{src}[{extra}]")
    return venv / "bin"
