"""Release trust: what signing and verifying cost, who MLflow lets move the alias, and what the
DAG's release does with a version tampered with after registration.

On a private local stack (MLflow with its auth app, SeaweedFS, the model server under gunicorn): one alias
move each as anonymous, the server's identity and the pipeline's (HTTP status). A TF-IDF version logged and
signed by ``log_classifier`` and released as champion; then every way around a release, each against the
serving replica: the alias moved to a version never released, to one every replica had staged as the
release's candidate (held, never approved), revoked by a rollback, without a logged model id, or superseded,
and a forged replica row; the version served after each. A second signed version with
its pickled model overwritten in S3, first through ``verify_and_load`` (refused, message kept), then
released by the DAG (``tests/e2e/dags/release_registered_version.py``: the real release tail under
``dag.test()``): the promote task fails when the replica cannot stage it (its state and message, the deploy
task's state), the version served afterwards and where ``champion`` ends; an unsigned version through
``verify_and_load``. Timing: signing and verifying the transformer folder a replica would load (the offline
MiniLM, ~88 MB, plus the signed TF-IDF pyfunc), medians over repeats.

    .venv/bin/python benchmarks/release_trust.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import record

SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "all-MiniLM-L6-v2"
TEST_DAGS = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "dags"


def _status(fn) -> int:
    try:
        fn()
        return 200
    except Exception as exc:
        return {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}.get(getattr(exc, "error_code", ""), 500)


def verify_and_load(
    model_uri: str, public: list[str], *, dst_dir: Path, expected_model_id: str | None = None
):
    """What a replica does with a version: download it (deserializing nothing), verify it, then load it."""
    from sentiflow.security.signing import download_version, load_verified

    local = download_version(model_uri, dst_dir)
    return load_verified(local, public, what=model_uri, expected_model_id=expected_model_id)


def _timings(folder: Path, private: Path, public: list[str], repeats: int) -> tuple[float, float]:
    from sentiflow.security.signing import sign_folder, verify_folder

    sign, verify = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        sign_folder(folder, private)
        sign.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        verify_folder(folder, public)
        verify.append((time.perf_counter() - started) * 1000)
    return statistics.median(sign), statistics.median(verify)


def _released_through_the_dag(
    stack, name: str, version: str, run_id: str, log_dir: Path
) -> dict[str, object]:
    """Run the release tail on ``version`` (forced past the gate): the promote and deploy tasks' states and
    the failed one's message, the version the server serves afterwards and the alias ``champion``."""
    from sentiflow import registry
    from sentiflow.localstack import stack as localstack
    from sentiflow.names import VAL_F1
    from sentiflow.serving_client import ModelServerClient
    from sentiflow.settings.components import MLflowSettings
    from tests.dagrun import failure_message, run_dag, task_logs

    localstack.airflow_init(stack)
    conf = {
        "registered_version": version,
        "registered_run_id": run_id,
        "selection_metric": VAL_F1,
        "force_promote": True,
        # the gate would load it for its behavioural cases and refuse it there; this is about the release's
        "behaviour_check": False,
    }
    started = time.perf_counter()
    run = run_dag(
        "release_registered_version", conf, env={"AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}, timeout_s=1200
    )
    took = time.perf_counter() - started
    logs = task_logs(run, log_dir)
    message = failure_message(logs.get("promote", "")) or failure_message(logs.get("deploy", "")) or ""
    server = ModelServerClient(stack.server_url, stack.server_token)
    client = registry.mlflow_client()
    return {
        "dag_run_state": run["state"],
        "select_best_task_state": run["tasks"].get("select_best"),
        "promote_task_state": run["tasks"].get("promote"),
        "deploy_task_state": run["tasks"].get("deploy"),
        "served_version_after": str(server.model()["version"]),
        "champion_after": registry.version_for_alias(client, MLflowSettings(), "champion"),
        "failure_message": message[:1200],
        "dag_run_s": round(took, 1),
    }


def _release(version: str) -> None:
    """What the pipeline's promote does: the signed approval, then the alias move, completed."""
    from sentiflow import registry
    from sentiflow.release import flow
    from sentiflow.settings.components import MLflowSettings

    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    flow.promote(client, settings, version, reason="release_trust benchmark")
    flow.finish(client, settings)


def _attempt(stack, name: str, served: str, target: str, move) -> dict[str, object]:
    """``move()`` (an alias move or a database write), then what the replica does about ``target``: the
    load error its workers report (or none within 30 s) and the version it serves afterwards."""
    import requests

    from sentiflow.serving_client import ModelServerClient

    move()
    deadline, errors = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        workers = [
            w for r in requests.get(f"{stack.server_url}/replicas", timeout=10).json()["replicas"]
            for w in r["workers"]
        ]  # fmt: skip
        errors = [w["load_error"] for w in workers if w.get("error_version") == target and w["load_error"]]
        if errors or any(w["version"] == target for w in workers):
            break
        time.sleep(0.5)
    after = str(ModelServerClient(stack.server_url, stack.server_token).model()["version"])
    return {
        "target": target,
        "served_after": after,
        "refused": after == served,
        "load_error": (errors[0] if errors else None) and str(errors[0])[:300],
    }


def _refused_moves(stack, name: str, served: str, clf) -> dict[str, object]:
    """Ways to make every replica serve something the pipeline did not release, each tried against the
    serving replica: the alias moved (with the pipeline's own MLflow identity, which may move it) to a
    version never released, to one a rollback revoked, to one without a logged model id, to a superseded
    one, and a forged replica row. Each must leave ``served`` serving."""
    import mlflow
    import sqlalchemy as sa

    from sentiflow import registry
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.release import flow
    from sentiflow.settings.components import MLflowSettings
    from sentiflow.settings.server import ServerSettings
    from serving.store.db import replicas_table

    settings = MLflowSettings()
    client = registry.mlflow_client(settings)

    def alias_to(version: str):
        return lambda: client.set_registered_model_alias(name, settings.champion_alias, version)

    def restore() -> None:
        client.set_registered_model_alias(name, settings.champion_alias, served)

    with mlflow.start_run():
        never = str(log_classifier(clf, registered_model_name=name).registered_model_version)
    with mlflow.start_run():
        staged = str(log_classifier(clf, registered_model_name=name).registered_model_version)
    with mlflow.start_run():
        revoked = str(log_classifier(clf, registered_model_name=name).registered_model_version)
    prior = flow.promote(client, settings, revoked, reason="release_trust: a release that fails")
    flow.roll_back(client, settings, prior, "release_trust: its inference check failed", attempts=1)
    with mlflow.start_run() as run:  # a version registered from a run's files: no logged model behind it
        mlflow.log_text("flavors: {}\n", "plain/MLmodel")
        source = f"runs:/{run.info.run_id}/plain"
        bare = str(client.create_model_version(name, source=source, run_id=run.info.run_id).version)
    out: dict[str, object] = {}
    staged_by: list[str | None] = []

    def stage_then_move() -> None:
        """The candidate alias names it, every replica stages it, then champion moves to it unapproved."""
        from sentiflow.serving_client import ModelServerClient

        client.set_registered_model_alias(name, settings.candidate_alias, staged)
        server = ModelServerClient(stack.server_url, stack.server_token)
        answer = server.wait_for_staged(staged, timeout_s=120)
        staged_by.extend(r["staged_version"] for r in answer["replicas"])
        client.set_registered_model_alias(name, settings.champion_alias, staged)

    out["staged_never_approved"] = {
        **_attempt(stack, name, served, staged, stage_then_move),
        "staged_by_every_replica_before": bool(staged_by) and all(v == staged for v in staged_by),
    }
    restore()
    client.delete_registered_model_alias(name, settings.candidate_alias)
    for key, target in (("never_released", never), ("revoked", revoked), ("no_model_id", bare)):
        out[key] = _attempt(stack, name, served, target, alias_to(target))
        restore()
    # the previous champion of a release that came after it: superseded
    _release(never)
    _release(served)
    out["superseded"] = _attempt(stack, name, served, never, alias_to(never))
    restore()
    url = ServerSettings().resolved_feedback_db_url
    engine = sa.create_engine(url)
    future = time.time() + 1e6

    def forge() -> None:
        with engine.begin() as conn:
            conn.execute(
                replicas_table.update().values(
                    alias_version=never, alias_read_at=future, alias_checked_at=future, alias_error=None
                )
            )

    out["forged_replica_row"] = _attempt(stack, name, served, never, forge)
    engine.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import mlflow

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.localstack import stack as localstack
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.names import VAL_F1
    from sentiflow.security import stack_auth
    from sentiflow.security.mlflow_auth import client_for
    from sentiflow.security.signing import SignatureError, version_model_id
    from sentiflow.serving_client import ModelServerClient
    from sentiflow.settings.components import MLflowSettings
    from tests.tamper import overwrite, version_artifact_key

    home = Path(tempfile.mkdtemp(prefix="release-trust-"))
    stack = localstack.stack_on_free_ports(home)
    saved = dict(os.environ)
    result: dict[str, object] = {}
    try:
        localstack.up(stack, ["s3", "mlflow", "model-server"], with_airflow=False)
        os.environ.update(localstack.client_env(stack))
        settings = MLflowSettings()
        public = [str(stack_auth.signing_keys(home)[1])]
        mlflow.set_tracking_uri(stack.mlflow_uri)
        mlflow.set_experiment(settings.experiment_name)
        clf = TfidfClassifier.build(["negative", "positive"], C=4.0)
        clf.fit(
            ["dull", "boring plot", "awful"] * 4 + ["great", "wonderful film", "moving"] * 4,
            [0] * 12 + [1] * 12,
        )
        with mlflow.start_run():
            mlflow.log_metric(VAL_F1, 0.70)
            info = log_classifier(clf, registered_model_name=settings.registered_model_name)
        version = str(info.registered_model_version)
        name = settings.registered_model_name
        for who, identity in (
            ("anonymous", None),
            ("server_identity", stack_auth.identity(home, "server")),
            ("pipeline", stack_auth.identity(home, "pipeline")),
        ):
            client = client_for(stack.mlflow_uri, identity)
            result[f"{who}_alias_move"] = {
                "status": _status(lambda c=client: c.set_registered_model_alias(name, "champion", version))
            }
        pipeline = client_for(stack.mlflow_uri, stack_auth.identity(home, "pipeline"))
        # the pipeline's bare alias move above is no release: undone, so the release below signs an approval
        pipeline.delete_registered_model_alias(name, "champion")
        mv = pipeline.get_model_version(name, version)
        uri = f"models:/{name}/{version}"
        loads = []
        for i in range(args.repeats):
            loaded = verify_and_load(
                uri, public, dst_dir=home / "loads" / str(i), expected_model_id=version_model_id(mv)
            )
            loads.append(loaded.verify_ms)

        # a release makes it the champion (its signed approval, then the alias): what the server serves
        _release(version)
        server = ModelServerClient(stack.server_url, stack.server_token)
        server.wait_for_version(version, timeout_s=300)
        result["refused_moves"] = _refused_moves(stack, name, version, clf)
        server.wait_for_version(version, timeout_s=300)

        # a better version (by its logged val_f1), signed, then its pickled model overwritten in S3
        with mlflow.start_run() as bad_run:
            mlflow.log_metric(VAL_F1, 0.90)
            bad = str(log_classifier(clf, registered_model_name=name).registered_model_version)
        overwrite(version_artifact_key(name, bad))
        bad_mv = pipeline.get_model_version(name, bad)
        try:
            verify_and_load(
                f"models:/{name}/{bad}",
                public,
                dst_dir=home / "loads" / "tampered",
                expected_model_id=version_model_id(bad_mv),
            )
            tampered: dict[str, object] = {"version": bad, "refused": False}
        except SignatureError as exc:
            tampered = {"version": bad, "refused": True, "message": str(exc)[:400]}
        tampered["champion_before"] = version
        tampered.update(_released_through_the_dag(stack, name, bad, bad_run.info.run_id, home / "dag-logs"))
        result["tampered_version"] = tampered

        unsigned_env = os.environ.pop("SENTIFLOW_SIGNING_PRIVATE_KEY_PATH")
        with mlflow.start_run():
            unsigned = str(log_classifier(clf, registered_model_name=name).registered_model_version)
        os.environ["SENTIFLOW_SIGNING_PRIVATE_KEY_PATH"] = unsigned_env
        try:
            verify_and_load(f"models:/{name}/{unsigned}", public, dst_dir=home / "loads" / "unsigned")
            result["unsigned_version"] = {"version": unsigned, "refused": False}
        except SignatureError as exc:
            result["unsigned_version"] = {"version": unsigned, "refused": True, "message": str(exc)[:300]}

        private = stack_auth.signing_keys(home)[0]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "minilm"
            shutil.copytree(SHARED_MODEL, folder)
            sign_ms, verify_ms = _timings(folder, private, public, args.repeats)
            size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        result.update(
            sign_ms_per_version=round(sign_ms, 1),
            verify_ms_per_load=round(verify_ms, 1),
            verify_ms_per_load_tfidf=round(statistics.median(loads), 1),
            transformer_folder_mb=round(size_mb, 1),
            repeats=args.repeats,
        )
    finally:
        localstack.down(stack, ["s3", "mlflow", "model-server"])
        os.environ.clear()
        os.environ.update(saved)
    moves = result["refused_moves"]
    markdown = (
        "| check | result |\n| --- | --- |\n"
        + "".join(
            f"| {k} alias move | HTTP {result[f'{k}_alias_move']['status']} |\n"  # type: ignore[index]
            for k in ("anonymous", "server_identity", "pipeline")
        )
        + f"| tampered version (S3 overwrite) | refused: {result['tampered_version']['refused']} |\n"  # type: ignore[index]
        + "| the DAG releases the tampered version | promote task "
        + f"{result['tampered_version']['promote_task_state']} (staging refused it), deploy task "  # type: ignore[index]
        + f"{result['tampered_version']['deploy_task_state']}; served after: "  # type: ignore[index]
        + f"{result['tampered_version']['served_version_after']} (champion before "  # type: ignore[index]
        + f"{result['tampered_version']['champion_before']}, after "  # type: ignore[index]
        + f"{result['tampered_version']['champion_after']}) |\n"  # type: ignore[index]
        + f"| unsigned version | refused: {result['unsigned_version']['refused']} |\n"  # type: ignore[index]
        + "".join(
            f"| served version after: {what} | {moves[key]['served_after']} "  # type: ignore[index]
            f"(refused: {moves[key]['refused']}) |\n"  # type: ignore[index]
            for key, what in (
                ("never_released", "alias moved to a version never released"),
                ("staged_never_approved", "alias moved to the staged candidate, never approved"),
                ("revoked", "alias moved to a version a rollback revoked"),
                ("no_model_id", "alias moved to a version without a logged model id"),
                ("superseded", "alias moved back to a superseded champion"),
                ("forged_replica_row", "a forged replica row naming another version"),
            )
        )
        + f"| sign, transformer folder ({result['transformer_folder_mb']} MB) | "
        + f"{result['sign_ms_per_version']} ms |\n"
        + f"| verify, transformer folder | {result['verify_ms_per_load']} ms |\n"
        + f"| verify, TF-IDF version (download excluded) | {result['verify_ms_per_load_tfidf']} ms |\n"
    )
    record("release_trust", result, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
