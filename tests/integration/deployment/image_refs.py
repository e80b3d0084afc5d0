"""Image references as test_compose.py and test_k8s.py read them: a third-party image is named by tag and
by the digest of its multi-platform index (`name:tag@sha256:...`: the tag for readers, the digest decides),
unless it is on NO_PUBLIC_DIGEST; sentiflow's own images are built by the user and pinned at a release.

docs/deployment.md ("Images and where they come from") gives each digest's source and how to refresh it,
and names every image of NO_PUBLIC_DIGEST.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tests.integration.deployment.compose_file import _instructions

#: Third-party images with no public record of a digest for their tag: referenced by tag until a host that
#: can pull reads it (docs/deployment.md).
NO_PUBLIC_DIGEST = frozenset({"apache/airflow:3.3.2-python3.11"})

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
#: A pinned reference anywhere in a file: name, tag and digest.
PINNED = re.compile(r"[a-z0-9][a-z0-9./_-]*:[\w.-]+@sha256:[0-9a-f]{64}")
_OWN = re.compile(r"(^|/)sentiflow/[a-z-]+([:@]|$)")


def is_own(ref: str) -> bool:
    """sentiflow's own image, under any registry."""
    return bool(_OWN.search(ref))


def unpinned(refs: Iterable[str]) -> list[str]:
    """The third-party references that carry no digest and are not on NO_PUBLIC_DIGEST."""
    return sorted({r for r in refs if not is_own(r) and not DIGEST.search(r) and r not in NO_PUBLIC_DIGEST})


def base_image_args(dockerfile: Path) -> dict[str, str]:
    """The Dockerfile's `ARG <NAME>_IMAGE=<default>`: the base images its FROM lines use."""
    args = {}
    for ins in _instructions(dockerfile):
        if ins.cmd.lower() == "arg" and "=" in ins.value[0]:
            key, _, value = ins.value[0].partition("=")
            if key.endswith("_IMAGE"):
                args[key] = value
    return args
