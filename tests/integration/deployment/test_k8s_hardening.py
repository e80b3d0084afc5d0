"""k8s/ hardened: every container of every workload runs without capabilities, without privilege gain, on a
read-only root filesystem (writing only to its emptyDir and claim volumes) as a non-root user; the model
server's pods reach no address outside the cluster; every NetworkPolicy peer is scoped to a named namespace.
"""

from __future__ import annotations

import pytest
import yaml

from tests.integration.deployment.k8s_manifests import K8S, manifests

WORKLOADS = {"Deployment", "StatefulSet", "Job", "Pod"}


def _pod_specs() -> list[tuple[str, dict]]:
    out = []
    for _, doc in manifests():
        if doc["kind"] in WORKLOADS:
            spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", spec))
    return out


def _containers() -> list[tuple[str, dict, dict]]:
    return [
        (f"{name}/{c['name']}", c, spec)
        for name, spec in _pod_specs()
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    ]


CONTAINERS = _containers()


def test_the_workloads_are_found():
    assert len(CONTAINERS) >= 10


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_every_container_is_hardened(name, container, spec):
    ctx = container.get("securityContext", {})
    assert ctx.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation: false"
    assert ctx.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem: true"
    caps = ctx.get("capabilities", {})
    assert caps.get("drop") == ["ALL"], f"{name}: capabilities drop ALL"
    assert not caps.get("add"), f"{name}: adds no capability"
    assert not ctx.get("privileged"), name
    non_root = ctx.get("runAsNonRoot", spec.get("securityContext", {}).get("runAsNonRoot"))
    assert non_root is True, f"{name}: runAsNonRoot"


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_containers_write_only_to_pod_volumes(name, container, spec):
    """A writable mount is an emptyDir or the StatefulSet's claim: never a hostPath."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:  # a volumeClaimTemplate's claim
            continue
        assert "hostPath" not in volume, f"{name}: {mount['mountPath']}"
        if "emptyDir" not in volume:
            assert mount.get("readOnly") or {"secret", "configMap", "projected"} & volume.keys(), (
                f"{name}: {mount['mountPath']} is writable but not an emptyDir"
            )


def _policies() -> list[dict]:
    return [d for _, d in manifests() if d["kind"] == "NetworkPolicy"]


def _selects_model_server(policy: dict) -> bool:
    want = {"app.kubernetes.io/name": "model-server"}
    if policy["metadata"]["namespace"] != "sentiflow":
        return False
    labels = policy["spec"]["podSelector"].get("matchLabels", {})
    return labels.items() <= want.items()


def test_the_model_server_reaches_no_address_outside_the_cluster():
    """No ipBlock (0.0.0.0/0 on 443 let a compromised replica send anything anywhere) and no rule that
    allows every destination; only the in-cluster peers it needs."""
    selecting = [p for p in _policies() if _selects_model_server(p) and "Egress" in p["spec"]["policyTypes"]]
    assert selecting
    peers = set()
    for policy in selecting:
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule without `to` allows all"
            for peer in rule["to"]:
                assert "ipBlock" not in peer, f"{policy['metadata']['name']}: {peer['ipBlock']}"
                peers.add(tuple(sorted(peer.get("podSelector", {}).get("matchLabels", {}).items())))
    names = {
        dict(p).get("app.kubernetes.io/name") or dict(p).get("k8s-app") or dict(p).get("component")
        for p in peers
    }
    # api-server: Airflow's (the Helm chart's label), which POST /deploy asks for release runs
    assert names == {"model-server-db", "redis", "mlflow", "object-store", "kube-dns", "api-server"}


def _peers():
    for policy in _policies():
        name = f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"
        for key, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(key, []):
                assert peers_key in rule, f"{name}: a {key} rule without `{peers_key}` matches every pod"
                for peer in rule[peers_key]:
                    yield name, peer


def test_no_network_policy_peer_matches_pods_in_any_namespace():
    """A peer that names pods also names their namespace; a namespace selector names one namespace."""
    for name, peer in _peers():
        if "ipBlock" in peer:
            continue
        ns = peer.get("namespaceSelector")
        assert ns is not None, f"{name}: podSelector {peer['podSelector']} without a namespaceSelector"
        assert set(ns) == {"matchLabels"}, f"{name}: {ns}"
        assert set(ns["matchLabels"]) == {"kubernetes.io/metadata.name"}, f"{name}: {ns}"
        if "podSelector" in peer:
            assert peer["podSelector"].get("matchLabels"), f"{name}: an empty podSelector"


def test_airflow_chart_containers_drop_capabilities():
    values = yaml.safe_load((K8S / "airflow-values.yaml").read_text())
    ctx = values["securityContexts"]["containers"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
