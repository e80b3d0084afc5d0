"""The k8s/ manifests as the test_k8s_*.py modules (and test_signing_keys.py) read them: every document of
k8s/*.yaml but the Helm values and the kustomization, lookups by kind and name, strict schema validation,
the Secret keys they read, and the shell commands of docs/deployment.md.

No cluster here: validation uses kubernetes-validate's strict JSON schemas (unknown fields fail; the schemas
ship in its wheel, so this works offline, and a missing validator fails the test instead of skipping it).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
KUBE_VERSION = "1.33.0"  # oldest Kubernetes the manifests target; autoscaling/v2 and policy/v1 are GA there
NOT_MANIFESTS = {"airflow-values.yaml", "kustomization.yaml"}
NAMESPACES = {"sentiflow", "sentiflow-training"}
DOCS = ROOT / "docs" / "deployment.md"


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in NOT_MANIFESTS:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind: str, name: str | None = None) -> dict:
    found = [
        d for _, d in manifests() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _validate(doc: dict) -> None:
    import kubernetes_validate.utils as kv  # requirements/dev.in: no skip, a missing validator fails

    kv.validate(doc, KUBE_VERSION, strict=True)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def secret_refs(*, optional: bool = True) -> set[tuple[str, str, str]]:
    """(namespace, Secret name, key) of every secretKeyRef and every key a Secret volume mounts in the
    manifests (a Secret is per namespace)."""
    refs = set()
    for _, doc in manifests():
        if doc["kind"] == "Secret":
            continue
        namespace = doc["metadata"].get("namespace")
        for node in _walk(doc):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and (optional or not ref.get("optional")):
                refs.add((namespace, ref["name"], ref["key"]))
            volume = node.get("secret")
            if isinstance(volume, dict) and "secretName" in volume:
                assert volume.get("items"), (
                    f"{volume['secretName']}: a Secret volume names the keys it mounts"
                )
                if optional or not volume.get("optional"):
                    refs.update((namespace, volume["secretName"], item["key"]) for item in volume["items"])
    return refs


def documented_commands(text: str | None = None) -> list[str]:
    """Every command line of the docs' (or ``text``'s) shell blocks, as the shell reads them: continuation
    lines joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", DOCS.read_text() if text is None else text, re.S):
        lines.extend(line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip())
    return lines


def documented_creates(kind: str) -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> keys created by each `kubectl create secret generic` (``kind="secret"``) or
    `kubectl create configmap` (``kind="configmap"``) in the docs' shell blocks, split by shlex."""
    created: dict[tuple[str, str], set[str]] = {}
    for line in documented_commands():
        if not line.startswith("kubectl"):
            continue
        words = shlex.split(line, comments=True)
        if words[1:] and "create" in words and kind in words:
            namespace = words[words.index("-n") + 1] if "-n" in words else "default"
            name = words[words.index("generic" if kind == "secret" else kind) + 1]
            keys = {w.split("=", 2)[1] for w in words if w.startswith(("--from-literal=", "--from-file="))}
            created.setdefault((namespace, name), set()).update(keys)
    return created


def documented_secrets() -> dict[tuple[str, str], set[str]]:
    return documented_creates("secret")
