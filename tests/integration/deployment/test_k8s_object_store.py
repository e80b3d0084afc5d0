"""k8s/object-store.yaml: SeaweedFS (compose's image and version) behind a Service on the S3 port every
component is pointed at, hardened, its data on a volume claim and its identities file from the Secret; the
Job that makes the bucket reads that same file. And the manifest's command runs: SeaweedFS of the pinned
version (the local stack's ``weed``) started with the StatefulSet's arguments serves S3 with the identities
``python -m sentiflow.security.s3_init identities`` prints, the Job's command makes the bucket, and each
identity is
allowed only its actions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.security.stack_auth import S3_IDENTITIES
from tests.integration.deployment.compose_file import COMPOSE
from tests.integration.deployment.k8s_manifests import by_kind, documented_commands, documented_secrets

SECRET = "sentiflow-object-store"


def _container(kind: str, name: str) -> tuple[dict, dict]:
    pod = by_kind(kind, name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.lstrip("-").split("=", 1) for a in args if a.startswith("-") and "=" in a)


def _identities_mount(pod: dict, container: dict) -> Path:
    """Where the container sees the Secret's ``s3.json``."""
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == SECRET]
    (item,) = volume["secret"]["items"]
    assert item["key"] == "s3.json"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount.get("readOnly") is True
    return Path(mount["mountPath"]) / item["path"]


def _hardened(pod: dict, container: dict) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_the_object_store_is_composes_seaweedfs_hardened_on_a_volume_claim():
    pod, container = _container("StatefulSet", "object-store")
    compose_image = re.search(r"\$\{SEAWEEDFS_IMAGE:-([^}]+)\}", COMPOSE.read_text())
    assert compose_image and container["image"] == compose_image.group(1)
    assert re.fullmatch(r"chrislusf/seaweedfs:\d+\.\d+@sha256:[0-9a-f]{64}", container["image"]), (
        "a release by tag and digest, never latest"
    )
    _hardened(pod, container)
    assert container["args"][0] == "server" and "-s3" in container["args"]
    flags = _flags(container["args"])
    (port,) = container["ports"]
    assert int(flags["s3.port"]) == port["containerPort"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    # the data on the claim, the rest of the root file system read only
    (claim,) = by_kind("StatefulSet", "object-store")["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == flags["dir"]
    assert flags["s3.config"] == str(_identities_mount(pod, container))

    service = by_kind("Service", "object-store")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    labels = by_kind("StatefulSet", "object-store")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    endpoint = f"http://object-store.sentiflow.svc.cluster.local:{service_port['port']}"
    for name in ("sentiflow-settings", "sentiflow-trainer-settings"):
        assert by_kind("ConfigMap", name)["data"]["SENTIFLOW_S3_ENDPOINT_URL"] == endpoint


def test_the_bucket_job_reads_the_object_stores_identities_file():
    store_pod, store = _container("StatefulSet", "object-store")
    pod, container = _container("Job", "object-store-init")
    _hardened(pod, container)
    assert container["command"] == ["python", "-m", "sentiflow.security.s3_init", "bucket"]
    assert (
        container["image"]
        == by_kind("Job", "mlflow-init")["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["S3_IDENTITIES_FILE"]["value"] == str(_identities_mount(pod, container))
    assert _identities_mount(store_pod, store).name == Path(env["S3_IDENTITIES_FILE"]["value"]).name
    for name in ("SENTIFLOW_S3_ENDPOINT_URL", "SENTIFLOW_S3_BUCKET"):
        assert env[name]["valueFrom"]["configMapKeyRef"] == {"name": "sentiflow-settings", "key": name}


@pytest.fixture()
def object_store(tmp_path: Path):
    """SeaweedFS started with the StatefulSet's arguments (paths, ports and the bind address made local),
    its identities file printed by ``python -m sentiflow.security.s3_init identities``: (endpoint, keys,
    env)."""
    _, container = _container("StatefulSet", "object-store")
    version = subprocess.run(
        [str(Path(sys.executable).parent / "weed"), "version"], capture_output=True, text=True, check=True
    ).stdout
    tag = container["image"].split("@")[0].rsplit(":", 1)[1]
    assert f" {tag} " in version, f"the local weed is not the image's: {version}"

    keys = {name: (f"sentiflow-{name}", f"{name}-secret-{os.getpid()}") for name in S3_IDENTITIES}
    env = {
        **os.environ,
        "SENTIFLOW_ENV": "production",
        "SENTIFLOW_S3_BUCKET": "cluster-bucket",
        "S3_ADMIN_ACCESS_KEY": "sentiflow-admin",
        "S3_ADMIN_SECRET_KEY": f"admin-secret-{os.getpid()}",
        "SENTIFLOW_S3_ACCESS_KEY_ID": keys["pipeline"][0],
        "SENTIFLOW_S3_SECRET_ACCESS_KEY": keys["pipeline"][1],
        "S3_MLFLOW_ACCESS_KEY": keys["mlflow-artifacts"][0],
        "S3_MLFLOW_SECRET_KEY": keys["mlflow-artifacts"][1],
        "S3_MODEL_SERVER_ACCESS_KEY": keys["model-server"][0],
        "S3_MODEL_SERVER_SECRET_KEY": keys["model-server"][1],
    }
    printed = subprocess.run(
        [sys.executable, "-m", "sentiflow.security.s3_init", "identities"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert printed.returncode == 0, printed.stderr
    identities = tmp_path / "secret" / "s3.json"  # the Secret's key, as the pod mounts it
    identities.parent.mkdir()
    identities.write_text(printed.stdout)

    local = {"dir": str(tmp_path / "data"), "ip.bind": localstack.HOST, "s3.config": str(identities)}
    ports = {name: localstack.free_port() for name in ("s3.port", "master.port", "volume.port", "filer.port")}
    args = [
        f"-{flag}={local[flag]}" if flag in local else f"-{flag}={ports[flag]}" if flag in ports else arg
        for arg in container["args"]
        for flag in [arg.lstrip("-").split("=", 1)[0]]
    ]
    args += [f"-{name}={port}" for name, port in ports.items() if name not in _flags(container["args"])]
    args += ["-s3.port.iceberg=0", "-s3.port.lance=0"]  # their default ports: another stack may hold them
    Path(local["dir"]).mkdir()
    endpoint = f"http://{localstack.HOST}:{ports['s3.port']}"
    home = localstack.stack_on_free_ports(tmp_path / "home")  # only its PID file and log
    service = supervisor.Service(
        name="object-store",
        argv=[str(Path(sys.executable).parent / container["command"][0]), *args],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        cwd=tmp_path,
        health=supervisor.http_ok(f"{endpoint}/healthz"),
        ports=tuple(ports.values()),
    )
    supervisor.start(home, service)
    try:
        yield endpoint, keys, env
    finally:
        supervisor.stop(home, "object-store")


def test_the_manifests_seaweedfs_serves_s3_with_the_secrets_identities(object_store, tmp_path: Path) -> None:
    endpoint, keys, env = object_store
    _, job = _container("Job", "object-store-init")
    job_env = {
        "PATH": os.environ["PATH"],
        "S3_IDENTITIES_FILE": str(tmp_path / "secret" / "s3.json"),
        "SENTIFLOW_S3_ENDPOINT_URL": endpoint,
        "SENTIFLOW_S3_BUCKET": env["SENTIFLOW_S3_BUCKET"],
    }
    argv = [sys.executable, *job["command"][1:]]
    done = subprocess.run(argv, env=job_env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert subprocess.run(argv, env=job_env, capture_output=True, timeout=180).returncode == 0  # idempotent

    def client(name: str):
        key, secret = keys[name]
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    bucket = env["SENTIFLOW_S3_BUCKET"]
    client("pipeline").put_object(Bucket=bucket, Key="data/train.csv", Body=b"text,label\n")
    client("model-server").put_object(Bucket=bucket, Key="production-samples/dt=1/w.parquet", Body=b"s")
    with pytest.raises(ClientError):
        client("model-server").put_object(Bucket=bucket, Key="data/evil.csv", Body=b"x")
    with pytest.raises(ClientError):
        client("pipeline").create_bucket(Bucket="not-granted")
    wrong = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=keys["pipeline"][0],
        aws_secret_access_key="not-the-secret",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError):
        wrong.list_objects_v2(Bucket=bucket)


def test_identities_refuses_placeholders_and_the_bucket_step_needs_an_admin(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "SENTIFLOW_ENV": "production",
        "SENTIFLOW_S3_BUCKET": "b",
        "S3_ADMIN_ACCESS_KEY": "a",
        "S3_ADMIN_SECRET_KEY": "change-me-s3-admin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "sentiflow.security.s3_init", "identities"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "S3_ADMIN_SECRET_KEY" in done.stderr and not done.stdout
    no_admin = tmp_path / "s3.json"
    no_admin.write_text(json.dumps({"identities": [{"name": "model-server", "actions": ["Read:b"]}]}))
    done = subprocess.run(
        [sys.executable, "-m", "sentiflow.security.s3_init", "bucket"],
        env={**env, "S3_IDENTITIES_FILE": str(no_admin), "SENTIFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "no identity allowed Admin" in done.stderr


def test_the_documented_commands_make_the_object_stores_identities_file(tmp_path: Path) -> None:
    """docs/deployment.md's lines, run by bash: ``s3.json`` (private) holds the admin and every identity of
    ``stack_auth.S3_IDENTITIES``, the pipeline's and MLflow's keys those the documented Secrets get."""
    lines = documented_commands()
    secrets = ("S3_PIPELINE_SECRET", "S3_MLFLOW_SECRET", "S3_SERVER_SECRET")
    script = [line for line in lines if line.startswith(tuple(f"{name}=" for name in secrets))]
    script += [line for line in lines if "sentiflow.security.s3_init identities" in line and line[0] != "#"]
    assert len(script) == 4, script
    script += ['printf "%s %s %s" "$S3_PIPELINE_SECRET" "$S3_MLFLOW_SECRET" "$S3_SERVER_SECRET" >secrets.txt']
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-e", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    identities = tmp_path / "s3.json"
    assert identities.stat().st_mode & 0o777 == 0o600
    document = json.loads(identities.read_text())
    by_name = {i["name"]: i for i in document["identities"]}
    assert set(by_name) == {"stack-admin", *S3_IDENTITIES}
    assert "Admin" in by_name["stack-admin"]["actions"]
    pipeline_secret, mlflow_secret, server_secret = (tmp_path / "secrets.txt").read_text().split()
    created = documented_secrets()["sentiflow", "sentiflow-credentials"]
    assert {"access_key_id", "mlflow_s3_access_key_id", "server_s3_access_key_id"} <= created
    docs = " ".join(lines)
    for name, secret, key in [
        ("pipeline", pipeline_secret, "access_key_id"),
        ("mlflow-artifacts", mlflow_secret, "mlflow_s3_access_key_id"),
        ("model-server", server_secret, "server_s3_access_key_id"),
    ]:
        (credentials,) = by_name[name]["credentials"]
        assert credentials["secretKey"] == secret
        assert f"--from-literal={key}={credentials['accessKey']} " in docs
    assert "--from-file=s3.json=s3.json" in docs
