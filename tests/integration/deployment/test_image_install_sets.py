"""Each image's install set runs its component's command from compose against real local services.

The suite's own ``.venv`` has every package of every component, so it cannot show that an image lacks one:
these tests install exactly what each Dockerfile installs into a clean venv (``install_sets.build``, one per
extra and session) and start the commands of docker-compose.yaml (and of the training pod) from it, with the
image's runtime layout (``serving/`` on ``PYTHONPATH``, as at ``/app``): the model server migrates its
database, boots and answers ``/predict`` with the champion's labels; ``s3-init`` and ``mlflow-init`` do their
jobs; the trainer trains, signs and registers a TF-IDF model; Airflow parses the DAGs. A package missing
from an extra fails here, at import or at start. The MLflow image's install set runs its auth app in
test_mlflow_image.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
import yaml

from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.localstack.stack import StackSettings
from sentiflow.security import stack_auth
from tests.devserver import NEG_TEXTS, POS_TEXTS, make_champion, own_registered_model, register_tfidf_versions
from tests.integration.deployment.compose_file import COMPOSE, DOCKER, _final_cmd

ROOT = Path(__file__).resolve().parents[3]
#: The image each compose service runs -> the extra its Dockerfile installs (third-party images: None).
IMAGE_EXTRAS = {"model-server": "serve", "airflow": "airflow", "mlflow": "mlflow"}


def service_image(service: dict) -> str | None:
    """``serve``/``airflow``/``mlflow`` for the project's images, None for third-party ones."""
    image = str(service.get("image", ""))
    for name, extra in IMAGE_EXTRAS.items():
        if f"/{name}:${{IMAGE_TAG:-0.1.0}}" in image:
            return extra
    return None


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``/app`` of the model-server image: ``serving/`` and nothing else of the repository."""
    app = tmp_path_factory.mktemp("app")
    shutil.copytree(ROOT / "serving", app / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    return app


def image_env(bin_dir: Path, app: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    if app is not None:
        env["PYTHONPATH"] = str(app)  # the Dockerfile's ENV PYTHONPATH=/app
    env.update(extra)
    return env


def run_in(env: dict[str, str], argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_compose_commands_exist_in_their_images_install_sets(install_set, app_dir) -> None:
    """Every command of docker-compose.yaml (or its image's CMD) names a console script of the image's
    install set, or a module it can import (``python -m X``)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    checked = []
    for name, service in services.items():
        extra = service_image(service)
        if extra not in ("serve",):  # airflow: test_airflow_parses_the_dags; mlflow: test_mlflow_image.py
            continue
        command = service.get("command") or shlex.split(_final_cmd(DOCKER / "serving.Dockerfile"))
        if isinstance(command, str):
            command = shlex.split(command)
        bin_dir = install_set(extra)
        assert (bin_dir / command[0]).exists(), f"{name}: {command[0]} is not in the {extra} install set"
        if command[:2] == ["python", "-m"]:
            found = run_in(image_env(bin_dir, app_dir), ["python", "-c", f"import {command[2]}"], cwd=app_dir)
            assert found.returncode == 0, f"{name}: {command[2]} does not import: {found.stderr[-2000:]}"
        checked.append(name)
    assert {"model-server", "model-server-migrate", "mlflow-init", "s3-init"} <= set(checked)


@pytest.fixture()
def champion(stack: StackSettings) -> Iterator[tuple[str, str]]:
    """(registered model, version): a small TF-IDF version, signed by the pipeline, under the ``champion``
    alias of this test's own registered model (registered from the suite: the pipeline's side)."""

    with own_registered_model("image-serve") as name:
        (version,) = register_tfidf_versions(1)
        make_champion(version)
        yield name, version


def test_model_server_image_migrates_boots_and_serves(
    install_set, app_dir: Path, stack: StackSettings, postgres, champion, tmp_path: Path
) -> None:
    bin_dir = install_set("serve")
    model_name, version = champion
    db = postgres.new_database().replace("postgresql://", "postgresql+psycopg2://", 1)
    env = image_env(
        bin_dir,
        app_dir,
        **{
            **localstack.server_env(stack),
            "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME": model_name,
            "SENTIFLOW_SERVER_FOLLOW_ALIAS": "champion",
            "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db,
            "SENTIFLOW_SERVER_STATE_DIR": str(tmp_path / "state"),
            "SENTIFLOW_SERVER_WORKERS": "1",
        },
    )
    # model-server-migrate: its healthcheck fails on the empty database, compose's command migrates it, then
    # the healthcheck passes
    migrate = yaml.safe_load(COMPOSE.read_text())["services"]["model-server-migrate"]
    check = migrate["healthcheck"]["test"][1:]
    assert run_in(env, check, cwd=app_dir).returncode != 0, "an empty database passed the migration check"
    done = run_in(env, migrate["command"], cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_in(env, check, cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]

    # the image's CMD: gunicorn with the app factory, bound here to a free loopback port
    port = localstack.free_port()
    argv = shlex.split(_final_cmd(DOCKER / "serving.Dockerfile"))
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}"
    service = supervisor.Service(
        name="model-server-image",
        argv=[str(bin_dir / argv[0]), *argv[1:]],
        env=env,
        cwd=app_dir,
        health=supervisor.http_ok(f"{url}/health"),
        ports=(port,),
    )
    home = localstack.stack_on_free_ports(tmp_path / "home")  # only its PID file and log
    try:
        supervisor.start(home, service)
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        deadline = time.monotonic() + 180
        while requests.get(f"{url}/ready", timeout=10).status_code != 200:  # the champion loaded
            assert time.monotonic() < deadline, "the image's server never loaded the champion"
            time.sleep(0.5)
        texts = ["a wonderful moving film", "boring plot, dull acting"]
        answer = requests.post(f"{url}/predict", json={"texts": texts}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == version
        assert [p["label"] for p in body["predictions"]] == ["positive", "negative"]
        assert requests.get(f"{url}/openapi.json", timeout=10).status_code == 200  # apispec
    finally:
        supervisor.stop(home, "model-server-image")


def test_one_shots_of_the_model_server_image(install_set, app_dir, stack: StackSettings, tmp_path) -> None:
    """s3-init writes SeaweedFS's identities and makes the bucket (and Kubernetes' object-store-init makes one
    from that file); mlflow-init provisions MLflow's users."""
    bin_dir = install_set("serve")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    bucket = "compose-bucket"
    identities = tmp_path / "s3-config" / "s3.json"
    env = image_env(
        bin_dir,
        app_dir,
        SENTIFLOW_ENV="production",
        SENTIFLOW_S3_ENDPOINT_URL=stack.s3_endpoint,
        SENTIFLOW_S3_BUCKET=bucket,
        S3_IDENTITIES_FILE=str(identities),
        S3_ADMIN_ACCESS_KEY=stack.access_key_id,
        S3_ADMIN_SECRET_KEY="stack-admin-key-is-not-a-placeholder",
        SENTIFLOW_S3_ACCESS_KEY_ID="sentiflow",
        SENTIFLOW_S3_SECRET_ACCESS_KEY="pipeline-7a1c2e",
        S3_MLFLOW_ACCESS_KEY="sentiflow-mlflow",
        S3_MLFLOW_SECRET_KEY="mlflow-3b9d4f",
        S3_MODEL_SERVER_ACCESS_KEY="sentiflow-model-server",
        S3_MODEL_SERVER_SECRET_KEY="model-server-5c0e6a",
    )
    command = services["s3-init"]["command"]
    env["S3_ADMIN_SECRET_KEY"] = stack.secret_access_key
    placeholder = run_in(
        {**env, "S3_MODEL_SERVER_SECRET_KEY": "change-me-s3-model-server"}, command, cwd=app_dir
    )
    assert placeholder.returncode == 1 and "S3_MODEL_SERVER_SECRET_KEY" in placeholder.stderr
    env["SENTIFLOW_ENV"] = "development"  # the local stack's admin secret is a well-known local default
    done = run_in(env, command, cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(identities.read_text())
    assert {i["name"] for i in document["identities"]} == {
        "stack-admin",
        "pipeline",
        "mlflow-artifacts",
        "model-server",
    }
    assert identities.stat().st_mode & 0o777 == 0o640
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=stack.access_key_id,
        aws_secret_access_key=stack.secret_access_key,
        region_name="us-east-1",
    )
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert run_in(env, command, cwd=app_dir).returncode == 0  # idempotent

    # Kubernetes' Job object-store-init (same image): the bucket, with the admin key of the mounted file
    job = next(
        d
        for d in yaml.safe_load_all((ROOT / "k8s" / "object-store.yaml").read_text())
        if d["kind"] == "Job" and d["metadata"]["name"] == "object-store-init"
    )
    job_env = image_env(
        bin_dir,
        app_dir,
        S3_IDENTITIES_FILE=str(identities),
        SENTIFLOW_S3_ENDPOINT_URL=stack.s3_endpoint,
        SENTIFLOW_S3_BUCKET="cluster-bucket",
    )
    done = run_in(job_env, job["spec"]["template"]["spec"]["containers"][0]["command"], cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cluster-bucket" in {b["Name"] for b in s3.list_buckets()["Buckets"]}

    admin = stack_auth.admin(stack.home).password.get_secret_value()
    users = {
        role: stack_auth.identity(stack.home, role).password.get_secret_value() for role in stack_auth.ROLES
    }
    provision = image_env(
        bin_dir,
        app_dir,
        SENTIFLOW_ENV="production",
        SENTIFLOW_MLFLOW_TRACKING_URI=stack.mlflow_uri,
        SENTIFLOW_MLFLOW_AUTH_ADMIN_USERNAME="admin",
        SENTIFLOW_MLFLOW_AUTH_ADMIN_PASSWORD=admin,
        **{f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_PASSWORD": pw for role, pw in users.items()},
        **{f"SENTIFLOW_MLFLOW_AUTH_{role.upper()}_USERNAME": n for role, n in stack_auth.ROLES.items()},
    )
    done = run_in(provision, services["mlflow-init"]["command"], cwd=app_dir)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_trainer_image_trains_with_its_entrypoint(install_set, stack: StackSettings, tmp_path: Path) -> None:
    """The trainer image's command as the training pod runs it (``python -m sentiflow.train`` and the
    arguments the DAG passes), from the ``train`` install set against the local stack: a tiny TF-IDF model
    trained on a clean snapshot in S3, logged, signed and registered; the registered version verifies with
    the servers' public key and predicts. Its CMD (``--help``) answers too."""
    import pandas as pd

    from sentiflow.data.snapshot import write_snapshot
    from sentiflow.security.signing import download_version, load_verified
    from sentiflow.storage import ObjectStore

    bin_dir = install_set("train")
    cmd = shlex.split(_final_cmd(DOCKER / "trainer.Dockerfile"))
    done = run_in(image_env(bin_dir), cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    pod = yaml.safe_load((ROOT / "k8s" / "trainer-pod-template.yaml").read_text())
    (container,) = pod["spec"]["containers"]
    assert container["command"] == cmd[: len(container["command"])]

    def split(copies: int) -> pd.DataFrame:
        return pd.DataFrame(
            {"text": POS_TEXTS * copies + NEG_TEXTS * copies, "label": [1] * 4 * copies + [0] * 4 * copies}
        )

    store = ObjectStore()
    store.ensure_bucket()
    manifest = write_snapshot(
        store,
        store.uri("datasets", "image-trainer", uuid.uuid4().hex[:8]),
        {"train": split(3), "validation": split(1), "test": split(1)},
        kind="clean",
        run_id="image-trainer",
        source={"dataset": "synthetic"},
        label_names=["negative", "positive"],
    )
    name = f"image-trainer-{uuid.uuid4().hex[:8]}"
    output = tmp_path / "result.json"
    env = image_env(bin_dir, **localstack.client_env(stack), SENTIFLOW_TRAIN_XCOM_DIR=str(tmp_path / "xcom"))
    (tmp_path / "xcom").mkdir()
    argv = [*container["command"], "--manifest-uri", manifest, "--family", "tfidf-logreg"]
    argv += ["--registered-model-name", name, "--output-json", str(output)]
    done = run_in(env, argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["model_uri"] == f"models:/{name}/{result['model_version']}"
    public_keys = json.loads(localstack.client_env(stack)["SENTIFLOW_SERVER_SIGNING_PUBLIC_KEYS"])
    uri = result["model_uri"]
    verified = load_verified(download_version(uri, tmp_path / "download"), public_keys, what=uri)
    predicted = verified.pyfunc.predict(
        pd.DataFrame({"text": ["a wonderful moving film", "dull and too long"]})
    )
    assert predicted["label"].tolist() == ["positive", "negative"]


@pytest.mark.slow
def test_airflow_image_parses_the_dags(install_set, tmp_path: Path) -> None:
    """The Airflow image's install set imports every DAG and plugin without an import error."""
    bin_dir = install_set("airflow")
    env = image_env(
        bin_dir,
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'airflow.db'}",
    )
    script = (
        "from airflow.dag_processing.dagbag import DagBag; import json; "
        f"b = DagBag(dag_folder={str(ROOT / 'dags')!r}); "
        "errors = {k: v[-500:] for k, v in b.import_errors.items()}; "
        "print(json.dumps({'dags': sorted(b.dag_ids), 'errors': errors}))"
    )
    done = run_in(env, ["python", "-c", script])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["errors"], result["errors"]
    from sentiflow import names

    sources = [f.read_text() for f in (ROOT / "dags").glob("*.py")]
    declared = {m for text in sources for m in re.findall(r'dag_id="([^"]+)"', text)} | {
        getattr(names, m) for text in sources for m in re.findall(r"dag_id=([A-Z_]+)\b", text)
    }  # a literal id, or one of sentiflow.names
    assert declared and set(result["dags"]) == declared
    # compose's commands run through the official entrypoint as `airflow <command>`; the `celery` worker of
    # profile `celery` (and its healthcheck's `celery` CLI) come with the base image's celery provider, not
    # with the extra, so this install set cannot show them
    assert (bin_dir / "airflow").exists()
