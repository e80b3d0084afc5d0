"""k8s/: every manifest validates against the Kubernetes API schemas and deserializes into the `kubernetes`
client's models, the schema check catches a misspelled field, and the kustomization lists every manifest but
the templates, in the two namespaces.

No cluster here: kubernetes-validate's strict JSON schemas (unknown fields fail; they ship in its wheel, so
this works offline, and a missing validator fails the test instead of skipping it) and the client's models.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from tests.integration.deployment.k8s_manifests import (
    K8S,
    KUBE_VERSION,
    NAMESPACES,
    NOT_MANIFESTS,
    _validate,
    by_kind,
    manifests,
)


@pytest.mark.parametrize(
    "doc",
    [d for _, d in manifests()],
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in manifests()],
)
def test_manifest_validates_against_kubernetes_schema(doc):
    _validate(doc)


def test_schema_validation_catches_a_wrong_field():
    from kubernetes_validate.utils import ValidationError

    bad = json.loads(json.dumps(by_kind("Deployment", "model-server")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/ready"
    with pytest.raises(ValidationError):
        _validate(bad)


def test_every_manifest_is_validated_against_its_schema():
    """The validator knows every kind used here (an unknown kind would pass unchecked)."""
    import kubernetes_validate.utils as kv

    kinds = {(d["apiVersion"], d["kind"]) for _, d in manifests()}
    assert {"NetworkPolicy", "PodDisruptionBudget", "StatefulSet", "Namespace"} <= {k for _, k in kinds}
    for _, doc in manifests():
        kv.validate(doc, KUBE_VERSION, strict=True)
    bad = json.loads(json.dumps(by_kind("NetworkPolicy", "model-server")))
    bad["spec"]["ingress"][0]["from"][0]["namespaceSelectr"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    "kind",
    [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "Pod",
        "Role",
        "Secret",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "StatefulSet",
        "Job",
    ],
)
def test_manifests_deserialize_into_kubernetes_client_models(kind):
    from kubernetes.client import ApiClient

    for doc in (d for _, d in manifests() if d["kind"] == kind):
        version = doc["apiVersion"].split("/")[-1].capitalize()
        model = ApiClient().deserialize(SimpleNamespace(data=json.dumps(doc)), f"{version}{kind}")
        assert model.metadata.name == doc["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_templates():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS
    assert set(kustomization["resources"]) == files - {"secret.template.yaml", "trainer-pod-template.yaml"}
    # No kustomize `namespace:`: it would move the training resources into the serving namespace.
    assert "namespace" not in kustomization
    namespaced = [d for _, d in manifests() if d["kind"] != "Namespace"]
    assert all("namespace" in d["metadata"] for d in namespaced)
    assert {d["metadata"]["namespace"] for d in namespaced} == NAMESPACES
    assert {d["metadata"]["name"] for _, d in manifests() if d["kind"] == "Namespace"} == NAMESPACES
