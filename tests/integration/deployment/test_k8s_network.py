"""k8s/network-policies.yaml, checked by evaluating the NetworkPolicies (the subset of the API they use):
every flow a component needs is allowed, the flows that must stay closed are denied, every namespace denies by
default and every pod can resolve names.
"""

from __future__ import annotations

import pytest

from tests.integration.deployment.k8s_manifests import NAMESPACES, by_kind, manifests


def _labels_match(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the evaluator knows matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict, policy_ns: str, ns: str, labels: dict) -> bool:
    if "ipBlock" in peer:  # every ipBlock here excludes the private ranges pods and Services live in
        return False
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and ns != policy_ns:
        return False
    if ns_sel is not None and not _labels_match(ns_sel, {"kubernetes.io/metadata.name": ns}):
        return False
    return pod_sel is None or _labels_match(pod_sel, labels)


def _port_matches(rule: dict, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _direction_allows(direction: str, me: tuple[str, dict], peer: tuple[str, dict], port: int, proto: str):
    """Kubernetes semantics: isolated if any policy selects the pod for this direction; then allowed if
    any of those policies has a rule matching the peer and the port."""
    ns, labels = me
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        d
        for _, d in manifests()
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["namespace"] == ns
        and direction in d["spec"]["policyTypes"]
        and _labels_match(d["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True  # namespaces these manifests do not police (airflow's chart, ingress-nginx)
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (
                peers is None or any(_peer_matches(p, ns, peer[0], peer[1]) for p in peers)
            ) and _port_matches(rule, port, proto):
                return True
    return False


def allowed(src: tuple[str, dict], dst: tuple[str, dict], port: int, proto: str = "TCP") -> bool:
    return _direction_allows("Egress", src, dst, port, proto) and _direction_allows(
        "Ingress", dst, src, port, proto
    )


def _pod(kind: str, name: str) -> tuple[str, dict]:
    doc = by_kind(kind, name)
    template = doc if kind == "Pod" else doc["spec"]["template"]
    return doc["metadata"]["namespace"], template["metadata"]["labels"]


MODEL_SERVER = ("Deployment", "model-server")
SERVER_DB = ("StatefulSet", "model-server-db")
REDIS = ("Deployment", "redis")
MLFLOW = ("Deployment", "mlflow")
MLFLOW_DB = ("StatefulSet", "mlflow-db")
MLFLOW_INIT = ("Job", "mlflow-init")
OBJECT_STORE = ("StatefulSet", "object-store")
OBJECT_STORE_INIT = ("Job", "object-store-init")
TRAINER = ("Pod", "sentiflow-train")
AIRFLOW_POD = ("airflow", {"component": "worker"})
INGRESS_POD = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
KUBE_DNS = ("kube-system", {"k8s-app": "kube-dns"})
ELSEWHERE = ("default", {"app": "anything"})
# pods labelled as sentiflow's components, in a namespace that is not sentiflow's
FAKE_OBJECT_STORE = ("default", {"app.kubernetes.io/name": "object-store"})
FAKE_MLFLOW = ("default", {"app.kubernetes.io/name": "mlflow"})


def _resolve(x):
    return _pod(*x) if isinstance(x[1], str) else x


@pytest.mark.parametrize(
    ("src", "dst", "port"),
    [
        (INGRESS_POD, MODEL_SERVER, 8000),
        (AIRFLOW_POD, MODEL_SERVER, 8000),  # the DAG's deploy and inference check
        (MODEL_SERVER, SERVER_DB, 5432),
        (MODEL_SERVER, REDIS, 6379),  # the shared rate-limit counters
        (MODEL_SERVER, MLFLOW, 5000),
        (AIRFLOW_POD, MLFLOW, 5000),
        (TRAINER, MLFLOW, 5000),
        (MLFLOW_INIT, MLFLOW, 5000),  # makes MLflow's users and grants
        (MLFLOW, MLFLOW_DB, 5432),
        (MODEL_SERVER, OBJECT_STORE, 8333),
        (MLFLOW, OBJECT_STORE, 8333),  # its artifact store
        (AIRFLOW_POD, OBJECT_STORE, 8333),  # data, task logs
        (TRAINER, OBJECT_STORE, 8333),
        (OBJECT_STORE_INIT, OBJECT_STORE, 8333),  # makes the bucket
    ],
    ids=str,
)
def test_network_policies_allow_what_each_component_needs(src, dst, port):
    assert allowed(_resolve(src), _resolve(dst), port)


@pytest.mark.parametrize(
    ("src", "dst", "port"),
    [
        (TRAINER, SERVER_DB, 5432),  # training never reaches serving's data
        (TRAINER, MODEL_SERVER, 8000),
        (TRAINER, MLFLOW_DB, 5432),
        (AIRFLOW_POD, SERVER_DB, 5432),
        (AIRFLOW_POD, MLFLOW_DB, 5432),
        (MODEL_SERVER, MLFLOW_DB, 5432),
        (MLFLOW, SERVER_DB, 5432),
        (SERVER_DB, MLFLOW, 5000),  # databases open nothing
        (ELSEWHERE, MODEL_SERVER, 8000),  # other namespaces: denied by default
        (ELSEWHERE, MLFLOW, 5000),
        (INGRESS_POD, MLFLOW, 5000),  # MLflow is not published through the ingress
        (INGRESS_POD, MODEL_SERVER, 9000),
        (MODEL_SERVER, TRAINER, 8000),  # nothing connects to training pods
        (TRAINER, REDIS, 6379),  # only the model server reaches the rate-limit counters
        (AIRFLOW_POD, REDIS, 6379),
        (MLFLOW, REDIS, 6379),
        (REDIS, MODEL_SERVER, 8000),
        (MLFLOW_INIT, MLFLOW_DB, 5432),  # the provisioning Job reaches MLflow, nothing else
        (MLFLOW_INIT, SERVER_DB, 5432),
        (MLFLOW_INIT, MODEL_SERVER, 8000),
        (MLFLOW_INIT, OBJECT_STORE, 8333),
        (OBJECT_STORE_INIT, MLFLOW, 5000),  # the bucket Job reaches the object store, nothing else
        (OBJECT_STORE_INIT, SERVER_DB, 5432),
        (OBJECT_STORE, MLFLOW, 5000),  # the object store opens nothing
        (OBJECT_STORE, SERVER_DB, 5432),
        (ELSEWHERE, OBJECT_STORE, 8333),
        (INGRESS_POD, OBJECT_STORE, 8333),  # S3 is not published through the ingress
        (REDIS, OBJECT_STORE, 8333),
        (MODEL_SERVER, MLFLOW_INIT, 8000),
        (MODEL_SERVER, FAKE_OBJECT_STORE, 8333),  # a look-alike label in another namespace is no peer
        (MLFLOW, FAKE_OBJECT_STORE, 8333),
        (TRAINER, FAKE_MLFLOW, 5000),
        (FAKE_MLFLOW, OBJECT_STORE, 8333),
    ],
    ids=str,
)
def test_network_policies_deny_everything_else(src, dst, port):
    assert not allowed(_resolve(src), _resolve(dst), port)


def test_every_namespace_denies_by_default_and_every_pod_resolves_names():
    for ns in NAMESPACES:
        deny = [
            d
            for _, d in manifests()
            if d["kind"] == "NetworkPolicy"
            and d["metadata"]["namespace"] == ns
            and d["spec"]["podSelector"] == {}
            and set(d["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not d["spec"].get("ingress")
            and not d["spec"].get("egress")
        ]
        assert deny, f"{ns} has no default-deny NetworkPolicy"
    for pod in (
        MODEL_SERVER,
        SERVER_DB,
        REDIS,
        MLFLOW,
        MLFLOW_DB,
        MLFLOW_INIT,
        OBJECT_STORE,
        OBJECT_STORE_INIT,
        TRAINER,
    ):
        for proto in ("UDP", "TCP"):
            assert _direction_allows("Egress", _pod(*pod), KUBE_DNS, 53, proto), pod
