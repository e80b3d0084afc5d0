"""docker-compose.yaml and .env.example as the test_compose.py modules (and test_signing_keys.py,
test_production.py, tests/unit/security/test_credentials_check.py) read them, without a Docker engine.

`docker-compose config` (1.29, Debian package; or the v2 plugin where present) resolves the file with an env
file; the library's pydantic settings classes are the reference for every SENTIFLOW_* name; the Dockerfiles
are read with the `dockerfile` parser; a service's published ports are read in either form `compose config`
writes. The fixtures ``resolved`` and ``raw`` are in this folder's conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "docker"


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`compose config` in a clean environment, so the test runner's own SENTIFLOW_* cannot leak in."""
    cmd = _compose_cmd()
    if cmd is None:
        pytest.fail("neither docker-compose nor the compose plugin is installed (scripts/system_deps.sh)")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [
            *cmd,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env_file),
            "--profile",
            "celery",
            "config",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic settings class of the library: the ones the README's table lists."""
    from sentiflow.settings.reference import settings_classes as documented

    return documented()


def settings_env_names() -> dict[str, tuple[type[BaseSettings], str]]:
    names = {}
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for field in cls.model_fields:
            names[f"{prefix}{field}".upper()] = (cls, field)
    return names


def service_env(resolved: dict, service: str) -> dict[str, str]:
    env = resolved["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _instructions(path: Path):
    import dockerfile  # requirements/dev.in: a missing parser fails the test

    return dockerfile.parse_file(str(path))


def declared_requirements(extra: str) -> list[str]:
    """The requirements pyproject.toml's ``extra`` lists (what the image installing ``.[extra]`` gets)."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]


def _final_cmd(path: Path) -> str:
    cmds = [i for i in _instructions(path) if i.cmd.lower() == "cmd"]
    return " ".join(cmds[-1].value)


@dataclass(frozen=True)
class Published:
    host_ip: str
    published: str
    target: int


def published(service: dict) -> list[Published]:
    """A service's published ports, from either form `compose config` writes: docker-compose 1.29's string
    ("127.0.0.1:8000:8000/tcp") or the v2 plugin's mapping (host_ip, published, target)."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append(
                Published(port.get("host_ip", "0.0.0.0"), str(port.get("published", "")), port["target"])
            )
            continue
        parts = str(port).split("/")[0].split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append(Published(host_ip, parts[-2] if len(parts) > 1 else "", int(parts[-1])))
    return out
