"""The model-signing key pair in compose and on Kubernetes: the private key only where the pipeline
signs, the public keys wherever a version is loaded, and keys that really sign and verify.

Compose: `docker/init-env.sh` makes the pair with `openssl`; `docker-compose config` hands it to the
containers; what the task containers get signs a folder with ``sentiflow.security.signing`` and what the
model server
gets verifies it (real ECDSA, no mocks), read through the library's settings classes as the containers read
it. Kubernetes: the manifests and Helm values wire the keys; the documented commands run for real
(`openssl`, `python3`, `kubectl create ... --dry-run=client -o yaml`, which needs no cluster) and the objects
they make sign and verify, before and after the documented rotation.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sentiflow.security.credentials_check import problems
from sentiflow.security.signing import SignatureError, sign_folder, verify_folder
from sentiflow.settings.components import SigningSettings
from sentiflow.settings.server import ServerSettings
from tests.integration.deployment.compose_file import DOCKER, ENV_EXAMPLE, compose_config, service_env
from tests.integration.deployment.k8s_manifests import (
    DOCS,
    K8S,
    _validate,
    by_kind,
    documented_commands,
    documented_creates,
    manifests,
)

PRIVATE = "SENTIFLOW_SIGNING_PRIVATE_KEY"
PRIVATE_PATH = "SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"
PUBLIC = "SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"
#: The compose services that run Airflow tasks (LocalExecutor: the scheduler; CeleryExecutor: the workers).
TASK_RUNNERS = {"airflow-scheduler", "airflow-worker"}
AIRFLOW = {"airflow-init", "airflow-apiserver", "airflow-dag-processor", "airflow-triggerer"} | TASK_RUNNERS


def _settings_from(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[str | Path | None, list[str]]:
    """(the private key, the public keys) as the library's settings read them from a container's ``env``."""
    for key in [k for k in os.environ if k.startswith("SENTIFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("SENTIFLOW_"):
            monkeypatch.setenv(key, value)
    return SigningSettings().key(), ServerSettings().signing_public_keys


def _model_folder(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "artifacts").mkdir(parents=True)
    (folder / "MLmodel").write_text(f"model_id: m-{name}\n")
    (folder / "artifacts" / "weights.bin").write_bytes(os.urandom(256))
    return folder


def _assert_tamper_is_refused(folder: Path, public_keys: list[str]) -> None:
    (folder / "artifacts" / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(SignatureError, match=r"weights\.bin"):
        verify_folder(folder, public_keys)


# --- compose ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example() -> dict:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_only_the_task_containers_hold_the_private_key(example):
    """The private key reaches the scheduler and the Celery workers and nothing else; the public keys reach
    every Airflow container (the gate verifies) and the model server."""
    services = example["services"]
    holders = {name for name in services if PRIVATE in service_env(example, name)}
    assert holders == TASK_RUNNERS
    assert not [name for name in services if PRIVATE_PATH in service_env(example, name)]
    verifiers = {name for name in services if PUBLIC in service_env(example, name)}
    assert verifiers == AIRFLOW | {"model-server"}
    server = service_env(example, "model-server")
    assert not [k for k in server if "SIGNING_PRIVATE" in k]
    assert "secrets" not in services["model-server"] and not services["model-server"].get("volumes")


def test_production_refuses_the_signing_placeholders_of_env_example(example):
    server = " ".join(problems("model-server", service_env(example, "model-server")))
    assert PUBLIC in server
    for name in AIRFLOW:
        assert PUBLIC in " ".join(problems("airflow", service_env(example, name))), name
    for name in TASK_RUNNERS:
        env = service_env(example, name)
        # local training runs `python -m sentiflow.train` with this environment: it checks `trainer`
        assert f"{PRIVATE} is a placeholder" in " ".join(problems("trainer", env)), name
        assert f"{PRIVATE} is a placeholder" in " ".join(problems("airflow", env)), name


def test_init_env_makes_a_key_pair_that_signs_in_airflow_and_verifies_in_the_server(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    out = tmp_path / ".env"
    run = subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    config = compose_config(out)
    assert config.returncode == 0, config.stderr
    generated = yaml.safe_load(config.stdout)

    folder = _model_folder(tmp_path, "signed")
    for runner in sorted(TASK_RUNNERS):
        key, _ = _settings_from(service_env(generated, runner), monkeypatch)
        assert isinstance(key, str)  # the PEM text, line breaks restored by compose
        private = load_pem_private_key(key.encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
        sign_folder(folder, key)
    for verifier in sorted(AIRFLOW | {"model-server"}):
        _, public_keys = _settings_from(service_env(generated, verifier), monkeypatch)
        assert len(public_keys) == 1
        assert verify_folder(folder, public_keys) == 0, verifier
    # production accepts what init-env made, in every container that runs a check at start
    checked = {name: "airflow" for name in AIRFLOW} | {"model-server": "model-server", "mlflow": "mlflow"}
    for name, component in {**checked, "mlflow-init": "mlflow-init"}.items():
        assert not problems(component, service_env(generated, name)), name
    assert not problems("trainer", service_env(generated, "airflow-scheduler"))
    _assert_tamper_is_refused(folder, public_keys)

    # A second .env gets its own pair: the first one's public key does not verify what the second signs.
    other = tmp_path / "other.env"
    subprocess.run(["bash", str(DOCKER / "init-env.sh"), str(other)], check=True, capture_output=True)
    other_key, _ = _settings_from(
        service_env(yaml.safe_load(compose_config(other).stdout), "airflow-worker"), monkeypatch
    )
    second = _model_folder(tmp_path, "second")
    sign_folder(second, str(other_key))
    with pytest.raises(SignatureError, match="invalid for all 1"):
        verify_folder(second, public_keys)


def test_init_env_without_openssl_stops_with_a_clear_message(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mktemp", "rm", "python3"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    out = tmp_path / ".env"
    run = subprocess.run(
        ["bash", str(DOCKER / "init-env.sh"), str(out)],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert run.returncode == 1
    assert "openssl" in run.stderr and "install it" in run.stderr
    assert not out.exists()


# --- Kubernetes: the wiring ---------------------------------------------------------------------------------
def _env_sources(container: dict) -> dict[str, tuple[str, str, str]]:
    """Env name -> ("secret" | "configmap", object name, key) for every env entry read from an object."""
    sources = {}
    for entry in container.get("env", []):
        for kind, field in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
            ref = entry.get("valueFrom", {}).get(field)
            if ref:
                sources[entry["name"]] = (kind, ref["name"], ref["key"])
    return sources


def test_the_model_server_gets_the_public_keys_and_nothing_of_the_private_one():
    (server,) = by_kind("Deployment", "model-server")["spec"]["template"]["spec"]["containers"]
    assert _env_sources(server)[PUBLIC] == ("configmap", "sentiflow-signing-public-keys", PUBLIC)
    template = by_kind("ConfigMap", "sentiflow-signing-public-keys")
    assert template["metadata"]["namespace"] == "sentiflow"
    assert template["data"] == {PUBLIC: "CHANGE_ME"}  # production refuses it (test_credentials_check.py)
    serving = [d for _, d in manifests() if d["metadata"].get("namespace") == "sentiflow"]
    text = json.dumps(serving)
    assert "signing_private_key" not in text and PRIVATE not in text
    pod = by_kind("Pod", "sentiflow-train")["spec"]["containers"][0]
    assert _env_sources(pod)[PRIVATE] == ("secret", "sentiflow-trainer-credentials", "signing_private_key")


def _airflow_values() -> dict:
    return yaml.safe_load((K8S / "airflow-values.yaml").read_text())


def test_airflow_gets_the_public_keys_everywhere_and_the_private_key_in_task_pods_only():
    values = _airflow_values()
    env_from = yaml.safe_load(values["extraEnvFrom"])  # every Airflow container
    assert {"configMapRef": {"name": "sentiflow-signing-public-keys"}} in env_from
    assert "SIGNING_PRIVATE" not in json.dumps(
        {k: values.get(k) for k in ("env", "secret", "extraEnv", "extraEnvFrom", "volumes", "volumeMounts")}
    )
    workers = values["workers"]  # KubernetesExecutor's pod template: the task pods
    env = {e["name"]: e["value"] for e in workers["env"]}
    key_path = Path(env[PRIVATE_PATH])
    (mount,) = [m for m in workers["extraVolumeMounts"] if str(key_path).startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True and key_path.parent == Path(mount["mountPath"])
    (volume,) = [v for v in workers["extraVolumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    assert secret["secretName"] == "sentiflow-airflow-signing"
    assert secret["defaultMode"] == 0o440  # group 0 (the chart's fsGroup) reads it, nobody else
    assert key_path.name in documented_creates("secret")["airflow", secret["secretName"]]
    # the values' fragments are valid pod fields (a typo in defaultMode or a mount fails the schema)
    _validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "task", "namespace": "airflow"},
            "spec": {
                "containers": [
                    {"name": "base", "image": "x", "env": workers["env"], "volumeMounts": [mount]}
                ],
                "volumes": workers["extraVolumes"],
            },
        }
    )


def test_documented_commands_create_every_configmap_key_the_manifests_and_values_read():
    kustomized = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for name, d in manifests()
        if d["kind"] == "ConfigMap" and name != "secret.template.yaml"
    }
    created = documented_creates("configmap")
    read = set()
    for _, doc in manifests():
        for container in _containers(doc):
            for kind, name, key in _env_sources(container).values():
                if kind == "configmap":
                    read.add((doc["metadata"]["namespace"], name, key))
    read.add(("airflow", "sentiflow-signing-public-keys", PUBLIC))  # the Helm values' extraEnvFrom
    for namespace, name, key in read:
        if (namespace, name) in kustomized:
            continue
        assert key in created.get((namespace, name), set()), f"docs create no {namespace}/{name} with {key}"


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec) if doc["kind"] != "Pod" else spec
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


# --- Kubernetes: the documented commands, run ---------------------------------------------------------------
def _signing_commands() -> tuple[list[str], list[str]]:
    """The documented command lines about the signing keys: (setup, rotation), comments left out."""
    text = DOCS.read_text()
    heading = text.index("### Rotating the signing key")
    end = min(i for i in (text.find("\n## ", heading), text.find("\n### ", heading + 1)) if i > 0)
    rotation = documented_commands(text[heading:end])
    lines = [
        line
        for line in documented_commands()
        if "signing" in line and not line.startswith("#") and "rollout" not in line
    ]
    return [line for line in lines if line not in rotation], [line for line in rotation if line in lines]


def _run(line: str, cwd: Path) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd)}  # no KUBECONFIG: dry runs need no cluster
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (line, done.stderr)
    return done.stdout


def _created(line: str, cwd: Path) -> dict:
    """The object a documented `kubectl create` line makes, rendered offline; Secret data decoded."""
    command = line.split(" | kubectl apply")[0]
    if "--dry-run" not in command:
        command += " --dry-run=client -o yaml"
    obj = yaml.safe_load(_run(command, cwd))
    if obj["kind"] == "Secret":
        obj["data"] = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    return obj


@pytest.fixture
def tools() -> None:
    for tool in ("openssl", "kubectl", "python3"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: the documented signing-key commands need it")


def test_the_documented_signing_key_commands_sign_verify_and_rotate(tools, tmp_path, monkeypatch):
    setup, rotation = _signing_commands()
    assert setup and rotation
    objects: dict[tuple[str, str], dict] = {}
    for line in setup:
        if line.startswith("kubectl"):
            obj = _created(line, tmp_path)
            objects[obj["metadata"]["namespace"], obj["metadata"]["name"]] = obj
        else:
            _run(line, tmp_path)
    assert not (tmp_path / "signing-private.pem").stat().st_mode & 0o077  # umask 077: owner only
    trainer = objects["sentiflow-training", "sentiflow-trainer-credentials"]["data"]["signing_private_key"]
    airflow_key = objects["airflow", "sentiflow-airflow-signing"]["data"]["signing-private.pem"]
    assert trainer == airflow_key
    lists = {
        ns: objects[ns, "sentiflow-signing-public-keys"]["data"][PUBLIC] for ns in ("sentiflow", "airflow")
    }
    assert lists["sentiflow"] == lists["airflow"]
    assert not [
        obj for key, obj in objects.items() if key[0] == "sentiflow" and "PRIVATE KEY" in json.dumps(obj)
    ]

    # The task pod's key file (workers.env's path, the mounted Secret) signs; the server's list verifies.
    mounted = tmp_path / "etc" / "signing-private.pem"
    mounted.parent.mkdir()
    mounted.write_text(airflow_key)
    key, public_keys = _settings_from({PRIVATE_PATH: str(mounted), PUBLIC: lists["sentiflow"]}, monkeypatch)
    old_signed = _model_folder(tmp_path, "old")
    sign_folder(old_signed, str(key))
    assert verify_folder(old_signed, public_keys) == 0

    # Rotation: both keys trusted (new first), the pipeline's Secrets switch to the new key.
    trainer_secret = objects["sentiflow-training", "sentiflow-trainer-credentials"]
    for line in rotation:
        if line.startswith("kubectl") and " patch secret " in line:
            patch = json.loads(_run("printf '%s' " + line.split(" -p ", 1)[1], tmp_path))
            for op in patch:
                assert op["op"] == "replace" and op["path"].startswith("/data/")
                trainer_secret["data"][op["path"].removeprefix("/data/")] = base64.b64decode(
                    op["value"]
                ).decode()
        elif line.startswith("kubectl"):
            obj = _created(line, tmp_path)
            objects[obj["metadata"]["namespace"], obj["metadata"]["name"]] = obj
        else:
            _run(line, tmp_path)
    _, rotated = _settings_from(
        {PUBLIC: objects["sentiflow", "sentiflow-signing-public-keys"]["data"][PUBLIC]}, monkeypatch
    )
    assert rotated == json.loads(objects["airflow", "sentiflow-signing-public-keys"]["data"][PUBLIC])
    assert len(rotated) == 2 and rotated[1] == public_keys[0]
    new_key = trainer_secret["data"]["signing_private_key"]
    assert (
        new_key != trainer
        and new_key == objects["airflow", "sentiflow-airflow-signing"]["data"]["signing-private.pem"]
    )
    new_signed = _model_folder(tmp_path, "new")
    sign_folder(new_signed, new_key)
    assert verify_folder(new_signed, rotated) == 0  # the new key
    assert verify_folder(old_signed, rotated) == 1  # what the old key signed still loads
    with pytest.raises(SignatureError):
        verify_folder(new_signed, public_keys)  # the old list alone does not trust the new key
    _assert_tamper_is_refused(new_signed, rotated)
