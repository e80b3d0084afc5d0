"""The inference check's cases drawn from the deployed run's test snapshot in the real local S3.

Sampling itself (seeded, every class, streamed like pandas) and the plan without a snapshot are in
tests/unit/release/test_check_cases.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from sentiflow.data.snapshot import write_snapshot
from sentiflow.names import TAG_DATASET_MANIFEST
from sentiflow.release.check_plan import CheckParams, plan_check

NAMES = ["negative", "neutral", "positive"]


def test_plan_check_reads_the_deployed_runs_snapshot_and_adds_user_cases(store) -> None:
    rows = [(f"{name} text {i}", label) for label, name in enumerate(NAMES) for i in range(10)]
    test_split = pd.DataFrame(rows, columns=["text", "label"])
    manifest_uri = write_snapshot(
        store, store.uri("datasets", "plan", "clean"), {"test": test_split}, kind="clean", run_id="plan",
        source={}, label_names=NAMES,
    )  # fmt: skip
    run = SimpleNamespace(
        data=SimpleNamespace(tags={TAG_DATASET_MANIFEST: manifest_uri}, metrics={"test_accuracy": 0.7})
    )
    client = SimpleNamespace(get_run=lambda run_id: run)
    mine = [{"text": "my own neutral text", "label": "neutral"}]
    plan = plan_check(store, client, "run-1", CheckParams(check_cases_per_class=2, check_texts=mine), seed=42)
    assert plan.sampled == 6 and len(plan.cases) == 7 and plan.sampled_from == manifest_uri
    assert {c.expected for c in plan.cases} == set(NAMES)
    assert all(c.text.startswith(c.expected) for c in plan.cases[:6])  # each drawn row keeps its own label
    assert plan.required_accuracy == pytest.approx(0.5)
