"""A manual release from the web page's Deploy button until every replica serves it, on the local stack.

Starts the local stack and Airflow as ``make airflow`` does (``python -m
sentiflow.localstack.airflow_standalone up`` in a
child process, the environment of ``tests/e2e/airflow_local/deployment.py``: a temp home, free ports, the
child's code this checkout's), registers two TF-IDF versions of one binary snapshot in S3 (its test split
is where the release's inference check draws its cases), then releases them alternately the way the Deploy
button asks: ``POST /deploy`` with the admin token, here with ``?wait=true`` (the button polls
``/deploy/status`` instead). The first release (no champion yet) is the warm-up; each timed one measures

- ``to_serving_s``: from sending the request until ``GET /replicas`` (admin token, polled every 0.25 s)
  shows every live replica and all its workers serving the version;
- ``post_s``: the request's own latency (the run ended: gate, stage, promote, deploy, inference check);
- ``airflow_run_s`` and ``queued_s``: the run's ``start_date`` → ``end_date`` and ``queued_at`` →
  ``start_date`` as Airflow's REST API has them, and each task's own duration.

The gate keeps the champion on a tie or a loss, which alternating between two versions meets on every
other release, so the timed releases say ``force_promote`` with a reason (the API's override; the gate
still scores both versions, the comparison is what is skipped). Only what this script started is stopped.

    PYTHONPATH=$PWD/include:$PWD .venv/bin/python benchmarks/release_button.py [--releases 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO), str(REPO / "benchmarks")]

from _common import command_line, cpu_flags, record  # noqa: E402

from sentiflow import names  # noqa: E402
from sentiflow.localstack import stack as localstack  # noqa: E402

REQUESTED_BY = "release_button benchmark"
FORCE_REASON = "benchmark alternates two versions; the gate keeps the champion on a tie or a loss"
WORDS = {0: ["awful", "boring", "dreadful", "dull"], 1: ["wonderful", "lovely", "great", "superb"]}
FILLER = ["the", "film", "story", "cast", "plot", "was", "a"]
#: Longest wait for one release (the POST) and for the release DAG to be parsed.
RELEASE_TIMEOUT_S = 300
PARSE_TIMEOUT_S = 300


def rows(n: int, offset: int):
    """Binary rows whose class one word carries: the TF-IDF models learn them from a few dozen."""
    import pandas as pd

    data = [
        (
            " ".join((FILLER[(i + offset) % 7], WORDS[i % 2][(i // 2) % 4], FILLER[(i * 3 + offset) % 7])),
            i % 2,
        )
        for i in range(n)
    ]
    return pd.DataFrame(data, columns=[names.TEXT_COLUMN, names.LABEL_COLUMN])


def register_versions(count: int) -> list[str]:
    """``count`` TF-IDF versions (different C) trained on one snapshot whose test split the inference
    check samples; each logs the gate's default metric and its test accuracy, signed by ``log_classifier``."""
    import mlflow

    from sentiflow.data.snapshot_writer import write_snapshot
    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings
    from sentiflow.storage import ObjectStore

    labels = ["negative", "positive"]
    frames = {"train": rows(80, 0), "validation": rows(40, 1), "test": rows(40, 2)}
    store = ObjectStore()
    manifest_uri = write_snapshot(
        store, store.uri("datasets", "release-button", "clean"), frames, kind="clean",
        run_id="release-button", source={}, label_names=labels,
    )  # fmt: skip
    settings = MLflowSettings()
    mlflow.set_experiment(settings.experiment_name)
    train, test = frames["train"], frames["test"]
    versions = []
    for c in (1.0, 4.0, 16.0)[:count]:
        clf = TfidfClassifier.build(labels, C=c).fit(train[names.TEXT_COLUMN], train[names.LABEL_COLUMN])
        predicted = clf.predict_proba(list(test[names.TEXT_COLUMN])).argmax(axis=1)
        accuracy = float((predicted == test[names.LABEL_COLUMN].to_numpy()).mean())
        with mlflow.start_run():
            mlflow.set_tag(names.TAG_DATASET_MANIFEST, manifest_uri)
            mlflow.log_metrics(
                {names.VAL_F1: 0.9, names.BEST_VAL_F1: 0.9, names.split_metric("test", "accuracy"): accuracy}
            )
            info = log_classifier(clf, registered_model_name=settings.registered_model_name)
        versions.append(str(info.registered_model_version))
    return versions


def all_serving(answer: dict, version: str) -> bool:
    replicas = answer.get("replicas") or []
    return bool(replicas) and all(
        str(r.get("version")) == version
        and all(str(w.get("version")) == version for w in r.get("workers", []))
        for r in replicas
    )


def iso_s(start: str | None, end: str | None) -> float | None:
    if not (start and end):
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


def release(stack, airflow, version: str, force: bool) -> dict:
    """One Deploy-button release of ``version``: its timings, the run's and its tasks'."""
    headers = {"Authorization": f"Bearer {stack.server_token}"}
    body: dict = {"version": version, "requested_by": REQUESTED_BY}
    if force:
        body.update(force_promote=True, force_reason=FORCE_REASON)
    served: dict[str, float] = {}
    done = threading.Event()

    def poll(t0: float) -> None:
        session = requests.Session()
        while not done.is_set():
            try:
                answer = session.get(f"{stack.server_url}/replicas", headers=headers, timeout=10).json()
                if all_serving(answer, version):
                    served["s"] = time.monotonic() - t0
                    served["replicas"] = len(answer["replicas"])
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.25)

    t0 = time.monotonic()
    watcher = threading.Thread(target=poll, args=(t0,), daemon=True)
    watcher.start()
    response = requests.post(
        f"{stack.server_url}/deploy", params={"wait": "true", "timeout": str(RELEASE_TIMEOUT_S)}, json=body,
        headers=headers, timeout=RELEASE_TIMEOUT_S + 60,
    )  # fmt: skip
    post_s = time.monotonic() - t0
    watcher.join(timeout=30)
    done.set()
    answer = response.json()
    run_id = answer.get("dag_run_id")
    session = airflow.session()
    run_url = f"{airflow.url}/api/v2/dags/{names.RELEASE_DAG}/dagRuns/{quote(run_id or '', safe='')}"
    run = session.get(run_url, timeout=60).json() if run_id else {}
    tasks = (
        session.get(f"{run_url}/taskInstances", timeout=60).json().get("task_instances", []) if run_id else []
    )
    return {
        "version": version,
        "forced": force,
        "http_status": response.status_code,
        "state": answer.get("state"),
        "failed_tasks": answer.get("failed_tasks"),
        "message": answer.get("message") or answer.get("error"),
        "dag_run_id": run_id,
        "to_serving_s": round(served["s"], 2) if "s" in served else None,
        "replicas": served.get("replicas"),
        "post_s": round(post_s, 2),
        "airflow_run_s": iso_s(run.get("start_date"), run.get("end_date")),
        "queued_s": iso_s(run.get("queued_at"), run.get("start_date")),
        "tasks_s": {t["task_id"]: round(t["duration"], 2) for t in tasks if t.get("duration") is not None},
    }


def wait_for_release_dag(airflow) -> None:
    session, deadline = airflow.session(), time.monotonic() + PARSE_TIMEOUT_S
    url = f"{airflow.url}/api/v2/dags/{names.RELEASE_DAG}"
    while session.get(url, timeout=60).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{names.RELEASE_DAG} not parsed within {PARSE_TIMEOUT_S}s")
        time.sleep(3)


def summary(values: list[float]) -> dict:
    return {
        "p50": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--releases", type=int, default=5, help="timed releases after the first one (default 5)")
    args = p.parse_args()

    from tests.e2e.airflow_local import deployment

    home = Path(tempfile.mkdtemp(prefix="release-button-"))
    stack = localstack.stack_on_free_ports(home)
    # the child processes (Airflow's, gunicorn's) import this checkout's code, not the venv's editable one
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "include"), str(REPO)])
    env = None
    started = time.monotonic()
    try:
        env, up = deployment.up(stack)
        airflow = deployment.came_up(stack, env, up)
        wait_for_release_dag(airflow)
        up_s = round(time.monotonic() - started, 1)
        print(f"stack and Airflow up in {up_s}s: {airflow.url}", flush=True)
        os.environ.update(localstack.client_env(stack))
        load_before = os.getloadavg()
        versions = register_versions(2)
        print(f"registered versions {versions}", flush=True)
        first = release(stack, airflow, versions[0], force=False)
        print("first release:", first, flush=True)
        # the gate's answer to alternating: asked unforced once; refused, the timed releases are forced
        probe = release(stack, airflow, versions[1], force=False)
        print("unforced release:", probe, flush=True)
        refused = probe["state"] != "success"
        runs = [] if refused else [probe]
        while len(runs) < args.releases:
            result = release(stack, airflow, versions[(len(runs) + 1) % 2], refused)
            print(f"release {len(runs) + 1}:", result, flush=True)
            runs.append(result)
    finally:
        if env is not None:
            deployment.down(env)
        localstack.down(stack)
    load_after = os.getloadavg()
    shutil.rmtree(home, ignore_errors=True)
    ok = [r for r in runs if r["state"] == "success" and r["to_serving_s"] is not None]
    if not ok:
        print("no release succeeded", file=sys.stderr)
        return 1
    result = {
        "setup": {
            "stack_and_airflow_up_s": up_s,
            "versions": versions,
            "gate": (
                "refused the unforced alternation: every timed release says force_promote with force_reason"
                if refused
                else "accepted the unforced alternation: no timed release is forced"
            ),
            "unforced_release": probe,
            "force_reason": FORCE_REASON if refused else None,
            "replicas": ok[0]["replicas"],
        },
        "to_serving_s": summary([r["to_serving_s"] for r in ok]),
        "post_s": summary([r["post_s"] for r in ok]),
        "airflow_run_s": summary([r["airflow_run_s"] for r in ok if r["airflow_run_s"] is not None]),
        "succeeded": len(ok),
        "releases": len(runs),
        "first_release": first,
        "runs": runs,
        "cpu_flags": cpu_flags(),
        # the 1, 5 and 15 minute load averages before the releases and after them: the other jobs' share
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
        "note": "shared machine: other jobs ran on its cores during the run",
    }
    task_ids = list(ok[0]["tasks_s"])
    tasks_p50 = {t: round(statistics.median(r["tasks_s"].get(t, 0.0) for r in ok), 2) for t in task_ids}
    result["tasks_p50_s"] = tasks_p50
    lines = "\n".join(
        f"| {i} | {r['version']} | {r['state']} | {r['to_serving_s']} | {r['post_s']} | {r['airflow_run_s']} "
        f"| {r['queued_s']} |"
        for i, r in enumerate(runs, 1)
    )
    if refused:
        # "release run <id> failed (tasks: ...): <the gate's reason>; see <link>"
        why = (probe.get("message") or "").split("; see ")[0].split("): ", 1)[-1]
        gate = (
            f"each forced past the gate with a reason: asked unforced, the gate refused the alternation "
            f"(`{why}`)"
        )
    else:
        gate = "none forced: the gate accepted the unforced alternation"
    flags = cpu_flags()
    vector = ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags) or "none"
    markdown = f"""
A manual release from the web page's Deploy button: `POST /deploy?wait=true` with the admin token asks
Airflow for a `{names.RELEASE_DAG}` run (gate, stage, promote, deploy, inference check) on the local stack
(`make airflow`: `airflow standalone`, LocalExecutor, SQLite, up in {up_s} s; model-server
replicas: {ok[0]["replicas"]}). {len(ok)} of {len(runs)} timed releases alternating TF-IDF versions
{versions[0]} and {versions[1]}, {gate}. The first release (no champion yet, unforced: {first["state"]},
{first["to_serving_s"]} s to serving) is left out. Shared machine: other jobs ran on its
{os.cpu_count()} cores meanwhile (5-minute load average {load_before[1]:.1f} before the releases,
{load_after[1]:.1f} after); CPU flags in the JSON (vector: {vector}).

| | p50 s | max s |
|---|---|---|
| request → every replica serves it | {result["to_serving_s"]["p50"]} | {result["to_serving_s"]["max"]} |
| `POST /deploy?wait=true` latency (run ended) | {result["post_s"]["p50"]} | {result["post_s"]["max"]} |
| Airflow's run duration (start → end) | {result["airflow_run_s"]["p50"]} | {result["airflow_run_s"]["max"]} |

| # | version | state | → serving s | POST s | Airflow run s | queued s |
|---|---|---|---|---|---|---|
{lines}

Task durations, p50 s: {", ".join(f"{t} {v}" for t, v in tasks_p50.items())}.

Before, when the server moved the alias itself, `POST /deploy` between versions already on disk took 3–9 s.
Now the request is a run of the pipeline's release tasks in Airflow, each task a process of its own; every
replica serves the version once `promote` has moved the alias (`deploy` waits for that), and the POST
answers after `inference_check` and the run's end.
"""
    record("release_button", result, markdown, command=f"PYTHONPATH=$PWD/include:$PWD {command_line()}")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
