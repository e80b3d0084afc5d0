"""The web page in a real headless Chromium, served by the real model server (gunicorn) behind a path prefix.

One walk through the page as a non-technical user would take it: see the deployed version, pick a metric
and see the best version, hit the empty-text and too-long errors, predict a positive and a negative text,
flag one wrong, try a wrong token, ask for a release without a name and then while the stack's Airflow is
not started (the page names the Airflow that does not answer, and the old version keeps serving), see a
release the pipeline made reach the page, and read the page on a phone-width window. A release the button
asks Airflow for, followed to its end, needs the release DAG in a running Airflow
(``tests/e2e/airflow_local``).
Screenshots go to ``test-artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest
import requests

from sentiflow import names
from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from tests.devserver import make_champion, release

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
PREFIX = "/prefix"
MODEL_NAME = "sentiflow-ui-test"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
POS = ["a wonderful moving film", "great acting and a great story", "loved it, wonderful", "great fun"]
NEG = ["dull and too long", "badly acted, boring", "boring plot, dull acting", "awful, boring film"]


@dataclass
class UiServer:
    url: str  # with the prefix
    token: str
    reviewer_token: str
    versions: list[str]  # [older, newer]
    broken: str


def _register(metrics: dict[str, float], C: float) -> str:
    import mlflow

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier
    from sentiflow.settings.components import MLflowSettings

    mlflow.set_experiment(MLflowSettings().experiment_name)
    clf = TfidfClassifier.build(["negative", "positive"], C=C)
    clf.fit(NEG * 3 + POS * 3, [0] * 12 + [1] * 12)
    with mlflow.start_run():
        mlflow.set_tags({names.TAG_MODEL_FAMILY: clf.family, names.TAG_DATASET: "ui-test-reviews"})
        mlflow.log_metrics(metrics)
        info = log_classifier(clf, registered_model_name=MODEL_NAME)
    return str(info.registered_model_version)


def _register_broken() -> str:
    """A version whose source holds no model (inside its run, as the registry requires): loading fails."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run() as run:
        mlflow.set_tag(names.TAG_MODEL_FAMILY, "broken")
    source = f"{run.info.artifact_uri}/no-such-model"
    return str(MlflowClient().create_model_version(MODEL_NAME, source=source, run_id=run.info.run_id).version)


def _ok(url: str):
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except Exception:
            return False

    return check


@pytest.fixture(scope="module")
def ui_server(stack) -> Iterator[UiServer]:

    # Version A is best by best_val_f1, version B by val_accuracy: the drop-down changes the answer.
    a = _register({names.BEST_VAL_F1: 0.91, names.VAL_ACCURACY: 0.80, names.VAL_AUC: 0.88}, C=1.0)
    b = _register({names.BEST_VAL_F1: 0.85, names.VAL_ACCURACY: 0.86, names.VAL_AUC: 0.90}, C=16.0)
    make_champion(a, name=MODEL_NAME)
    broken = _register_broken()

    service = localstack.services(stack)["model-server"]
    env = {
        **service.env,
        "SCRIPT_NAME": PREFIX,  # gunicorn mounts the app under the prefix, as behind a reverse proxy
        "SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME": MODEL_NAME,
        "SENTIFLOW_SERVER_STATE_DIR": str(stack.home / "ui-model-server"),
        "SENTIFLOW_SERVER_WORKERS": "2",
        "SENTIFLOW_SERVER_THREADS": "8",
        "SENTIFLOW_SERVER_RELOAD_POLL_S": "0.2",
    }
    url = f"{stack.server_url}{PREFIX}"
    service = replace(service, env=env, health=_ok(f"{url}/ready"))
    supervisor.start(stack, service)
    try:
        yield UiServer(
            url=url,
            token=stack.server_token,
            reviewer_token=stack.reviewer_token,
            versions=[a, b],
            broken=broken,
        )
    finally:
        supervisor.stop(stack, "model-server")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it with scripts/system_deps.sh (apt chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright for Python is not installed: make install")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def test_page_walkthrough(ui_server, browser, artifacts, monkeypatch):
    from playwright.sync_api import expect

    old, new = ui_server.versions
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(ui_server.url) else outside.append(r.url))

    page.goto(f"{ui_server.url}/ui/")
    expect(page.locator("#model-version")).to_have_text(old)
    expect(page.locator("#serving-pill")).to_have_text(f"Serving version {old}")
    expect(page.locator("#model-runtime")).to_have_text("scikit-learn")  # which runtime answers
    assert ui_server.token not in page.content()

    # Versions table: both trained versions and the broken one; best by the default metric, then another.
    expect(page.locator("#versions-body tr")).to_have_count(3)
    expect(page.locator("#best-version")).to_have_text(f"version {old}")
    page.select_option("#metric-select", names.VAL_ACCURACY)
    expect(page.locator("#best-version")).to_have_text(f"version {new}")
    expect(page.locator("#versions-body tr").first).to_have_attribute("data-version", new)  # best on top
    expect(page.locator("#deploy-best")).to_have_text(f"Deploy the best (version {new})")
    # Sorting by a header, with the keyboard.
    page.locator('th button[data-sort="version"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator('th:has(button[data-sort="version"])')).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#versions-body tr").first).to_have_attribute("data-version", ui_server.broken)
    page.keyboard.press("Enter")
    expect(page.locator("#versions-body tr").first).to_have_attribute("data-version", old)
    page.screenshot(path=str(artifacts / "01-versions.png"), full_page=True)

    # Errors for an empty and a too-long text, before anything reaches the model.
    page.click("#predict-btn")
    expect(page.locator("#predict-error")).to_be_visible()
    expect(page.locator("#predict-error")).to_contain_text("The text is empty")
    page.screenshot(path=str(artifacts / "02-empty-text-error.png"), full_page=True)
    max_chars = int(page.locator("body").get_attribute("data-max-text-chars"))
    page.fill("#predict-text", "a" * (max_chars + 1))
    page.click("#predict-btn")
    expect(page.locator("#predict-error")).to_contain_text(f"too long: {max_chars + 1} characters")

    # A positive and a negative text at once (one per line), sent with Ctrl+Enter from the text box.
    page.check("#predict-lines")
    page.fill("#predict-text", "a wonderful moving film, great acting\nboring plot, dull and too long")
    page.locator("#predict-text").press("Control+Enter")
    predictions = page.locator("li.prediction")
    expect(predictions).to_have_count(2)
    expect(page.locator("#predict-error")).to_be_hidden()
    expect(predictions.nth(0).locator(".predicted")).to_have_text("positive")
    expect(predictions.nth(1).locator(".predicted")).to_have_text("negative")
    expect(predictions.nth(0).locator(".bar-row")).to_have_count(2)
    expect(page.locator("#predictions")).to_contain_text(f"Answered by model version {old}")

    # Flag the first one correct and the second one wrong (two labels: the other label is the right one).
    predictions.nth(0).get_by_role("button", name="Correct").click()
    expect(predictions.nth(0).locator(".done")).to_contain_text("marked correct")
    predictions.nth(1).get_by_role("button", name="Wrong").click()
    expect(predictions.nth(1).locator(".done")).to_contain_text("marked wrong, the right label is “positive”")
    expect(page.locator("#accuracy-value")).to_have_text("50.0%")
    expect(page.locator("#feedback-chart rect")).to_have_count(2)  # today's stacked bar: correct + wrong
    page.screenshot(path=str(artifacts / "03-predictions-and-feedback.png"), full_page=True)
    export = requests.get(
        f"{ui_server.url}/feedback/export",
        headers={"Authorization": f"Bearer {ui_server.reviewer_token}"},
        timeout=10,
    )
    rows = pd.read_csv(io.StringIO(export.text))
    wrong = rows[~rows["correct"]].iloc[-1]
    assert wrong["text"] == "boring plot, dull and too long"
    assert (wrong["predicted_label"], wrong["true_label"], str(wrong["model_version"])) == (
        "negative",
        "positive",
        old,
    )

    # Deploy without a token, then with a wrong one: clear messages, nothing changes.
    page.click("#deploy-best")
    expect(page.locator("#deploy-message")).to_contain_text("Enter the admin token first")
    page.fill("#token-input", "not-the-token")
    page.press("#token-input", "Enter")
    expect(page.locator("#token-state")).to_have_text("A token is set for this tab.")
    page.click("#deploy-best")  # a release records who asked: the name first
    expect(page.locator("#deploy-message")).to_contain_text("Enter your name first")
    page.fill("#requester-input", "ui walkthrough")
    page.click("#deploy-best")
    expect(page.locator("#deploy-message")).to_contain_text("rejected the admin token")
    expect(page.locator("#deploy-message")).to_contain_text(f"Version {old} is still serving")
    expect(page.locator("#token-state")).to_have_text("No token set.")
    page.screenshot(path=str(artifacts / "04-rejected-token.png"), full_page=True)

    # The right token, kept in sessionStorage only. The stack's Airflow is not started: the page names the
    # Airflow that does not answer, and nothing changes.
    page.fill("#token-input", ui_server.token)
    page.click("#token-save")
    assert page.evaluate("sessionStorage.getItem('sentiflow-admin-token')") == ui_server.token
    assert ui_server.token not in page.content()
    page.click("#deploy-best")
    expect(page.locator("#deploy-message")).to_contain_text("is unreachable")
    expect(page.locator("#deploy-message")).to_contain_text("Airflow at http://127.0.0.1:")
    expect(page.locator("#deploy-message")).to_contain_text(f"Version {old} is still serving")
    assert page.evaluate("sessionStorage.getItem('sentiflow-requested-by')") == "ui walkthrough"
    expect(page.locator("#deploy-link")).to_be_hidden()
    page.screenshot(path=str(artifacts / "05-no-airflow.png"), full_page=True)

    # The pipeline releases the best version; the page shows it once it reloads the model.
    monkeypatch.setenv("SENTIFLOW_MLFLOW_REGISTERED_MODEL_NAME", MODEL_NAME)  # the model this server serves
    release(ui_server.url, new, token=ui_server.token, timeout_s=60)
    page.click("#model-refresh")
    page.click("#versions-refresh")
    expect(page.locator("#model-version")).to_have_text(new)
    expect(page.locator(f'#versions-body tr[data-version="{new}"] .badge.serving')).to_be_visible(
        timeout=30_000
    )
    r = requests.post(f"{ui_server.url}/predict", json={"text": "great"}, timeout=10)
    assert r.json()["model_version"] == new
    page.screenshot(path=str(artifacts / "06-released.png"), full_page=True)

    # A server error on predict is shown on the page, not swallowed.
    page.route(
        "**/predict", lambda route: route.fulfill(status=500, json={"message": "boom from the server"})
    )
    page.fill("#predict-text", "a fine film")
    page.click("#predict-btn")
    expect(page.locator("#predict-error")).to_contain_text("Prediction failed: boom from the server")
    page.unroute("**/predict")

    # Phone width: nothing wider than the window except the table, which scrolls inside its box.
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    expect(page.locator("#model-version")).to_have_text(new)
    expect(page.locator("#versions-body tr")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(artifacts / "07-narrow.png"), full_page=True)

    assert outside == [], f"the page fetched something outside the server: {outside}"
    assert [e for e in console_errors if "status of 4" not in e and "status of 5" not in e] == []
    context.close()


def test_versions_table_is_readable_at_1280_and_filters_by_registered_model(ui_server, browser, artifacts):
    """Dataset by source name (snapshot URI in the tooltip), the gate's decision, every metric column in
    view at 1280 px without sideways scrolling, and a second registered model in the filter."""
    import mlflow
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    from sentiflow.families.tfidf.model import TfidfClassifier
    from sentiflow.modeling.pyfunc import log_classifier

    old, new = ui_server.versions
    client = MlflowClient()
    snapshot = "s3://sentiflow/datasets/manual__2026-11-26T01_00_00+00_00/clean-with-feedback/manifest.json"
    runs = {v: client.get_model_version(MODEL_NAME, v).run_id for v in (old, new)}
    client.set_tag(runs[old], names.TAG_DATASET, "/work/shared/data/imdb")
    client.set_tag(runs[new], names.TAG_DATASET, "s3://sentiflow/inputs/imdb-and-feedback")
    client.set_tag(runs[new], names.TAG_DATASET_MANIFEST, snapshot)
    gate = {
        "promote": "False", "comparable": "True", "metric": "best_val_f1", "candidate_value": "0.85",
        "champion_version": old, "champion_value": "0.84", "champion_scored_on": snapshot,
        "difference": "0.01", "difference_ci_low": "-0.021", "difference_ci_high": "0.04",
        "confidence": "0.95", "comparison_method": "paired bootstrap",
        "reason": f"version {new} has val_f1=0.8500 vs champion version {old} 0.8400 on the same 500 "
        "validation rows: the 95% interval does not clear 0: the difference may be chance; champion kept",
        "behaviour_cases": "34", "behaviour_failed": "2", "champion_behaviour_failed": "1",
        "behaviour_failures": json.dumps([
            {"capability": "negation", "text": "The movie was not good.", "expected": "negative",
             "got": "positive"},
        ]),
    }  # fmt: skip
    for key, value in gate.items():
        client.set_tag(runs[new], names.TAG_GATE_PREFIX + key, value)
    other = "sentiflow-ui-test-three-class"
    clf = TfidfClassifier.build(["negative", "neutral", "positive"])
    clf.fit(NEG * 2 + ["it was okay", "an average film"] * 3 + POS * 2, [0] * 8 + [1] * 6 + [2] * 8)
    with mlflow.start_run():
        mlflow.set_tags({names.TAG_MODEL_FAMILY: clf.family, names.TAG_DATASET: "cardiffnlp/tweet_eval"})
        mlflow.log_metrics({names.BEST_VAL_F1: 0.61, names.VAL_ACCURACY: 0.63, names.VAL_AUC: 0.79})
        log_classifier(clf, registered_model_name=other)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{ui_server.url}/ui/")
    expect(page.locator("#versions-body tr")).to_have_count(3)
    # the served model first and selected; the other one offered (the session's registry may hold more)
    expect(page.locator("#model-select option").first).to_have_attribute("value", MODEL_NAME)
    expect(page.locator(f'#model-select option[value="{other}"]')).to_have_count(1)
    expect(page.locator("#model-select")).to_have_value(MODEL_NAME)

    row = page.locator(f'#versions-body tr[data-version="{new}"]')
    name = row.locator(".dataset-name")
    expect(name).to_have_text("imdb-and-feedback")
    # without the admin token the page gets no dataset URI; with it, the tooltip and the decision name it
    assert snapshot not in (name.get_attribute("title") or "") and snapshot not in page.content()
    page.fill("#token-input", ui_server.token)
    page.click("#token-save")
    page.reload()
    expect(page.locator("#versions-body tr")).to_have_count(3)
    assert snapshot in name.get_attribute("title")
    expect(page.locator(f'#versions-body tr[data-version="{old}"] .dataset-name')).to_have_text("imdb")
    expect(row.locator("td.gate .verdict")).to_have_text("kept")
    row.locator("td.gate summary").click()
    expect(row.locator("dl.gate-detail")).to_contain_text("[−0.021, +0.040] paired bootstrap")
    expect(row.locator("dl.gate-detail")).to_contain_text(snapshot)
    expect(row.locator("dl.gate-detail")).to_contain_text("2 of 34 cases failed (champion 1)")
    expect(row.locator("ul.gate-failures li").first).to_have_text(
        "negation: “The movie was not good.” → positive (expected negative)"
    )
    expect(row.locator("ul.gate-failures li").last).to_have_text("… 1 more")  # a tag holds whole cases

    # 1280 px: the table fits its box (no sideways scrolling) and every metric header is in view
    wrap = page.get_by_role("region", name=re.compile("^Registered versions"))
    assert wrap.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), wrap.evaluate(
        "e => [e.scrollWidth, e.clientWidth]"
    )
    columns = page.evaluate("() => [...document.querySelectorAll('#versions-head th')].map(t => t.innerText)")
    for metric in (names.BEST_VAL_F1, names.VAL_ACCURACY, names.VAL_AUC):
        header = page.locator(f'th button[data-sort="{metric}"]')
        box = header.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1280, (metric, box, columns)
    page.screenshot(path=str(artifacts / "web-page.png"), full_page=True)
    page.locator("#versions").screenshot(path=str(artifacts / "web-page-versions.png"))

    # two datasets in one model: the page says so, and the dataset filter compares like with like
    expect(page.locator("#mixed-datasets")).to_contain_text("2 datasets")
    page.select_option("#dataset-select", "imdb")
    expect(page.locator("#versions-body tr")).to_have_count(1)
    expect(page.locator("#best-version")).to_have_text(f"version {old}")
    expect(page.locator("#mixed-datasets")).to_have_count(0)

    # the other registered model: its own versions, not deployable from this server
    page.select_option("#model-select", other)
    expect(page.locator("#versions-body tr")).to_have_count(1)
    expect(page.locator("#versions-body .dataset-name")).to_have_text("cardiffnlp/tweet_eval")
    expect(page.locator("#versions-body")).to_contain_text("not served")
    expect(page.locator("#deploy-best")).to_be_disabled()
    context.close()


def test_reviewer_view_signs_in_and_accepts_corrects_and_rejects(ui_server, browser, artifacts):
    """The reviewer's view: the admin token does not open it; the reviewer token lists pending feedback,
    and accept, correct and a bulk reject by filter each reach the store with the reviewer's name."""
    from playwright.sync_api import expect

    marker = "reviewview"
    texts = [f"{marker} {word} film" for word in ("wonderful", "dreadful", "spam one", "spam two")]
    predicted = requests.post(f"{ui_server.url}/predict", json={"texts": texts}, timeout=30).json()
    ids = []
    for text, p in zip(texts, predicted["predictions"], strict=True):
        body = {"prediction_id": p["prediction_id"], "text": text, "correct": True}
        ids.append(requests.post(f"{ui_server.url}/feedback", json=body, timeout=10).json()["id"])

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{ui_server.url}/ui/")
    expect(page.locator("#review-summary")).to_contain_text("Sign in with the reviewer token")
    page.fill("#reviewer-token-input", ui_server.token)  # the admin token is not a reviewer's
    page.press("#reviewer-token-input", "Enter")
    expect(page.locator("#review-error")).to_contain_text("invalid bearer token")
    page.fill("#reviewer-token-input", ui_server.reviewer_token)
    page.press("#reviewer-token-input", "Enter")
    page.fill("#reviewer-name", "ui reviewer")
    page.dispatch_event("#reviewer-name", "change")
    page.fill("#review-contains", marker)
    page.click("#review-apply")
    rows = page.locator("#review-body tr")
    expect(rows).to_have_count(4)
    assert ui_server.reviewer_token not in page.content()

    rows.nth(0).get_by_role("button", name="Accept").click()
    expect(rows).to_have_count(3)
    rows.nth(0).locator("select").select_option("positive")
    rows.nth(0).get_by_role("button", name="Correct").click()
    expect(rows).to_have_count(2)
    page.fill("#review-contains", f"{marker} spam")
    page.click("#review-reject-all")
    expect(page.locator("#review-summary")).to_contain_text("reject: 2 rows")
    expect(rows).to_have_count(0)
    page.screenshot(path=str(artifacts / "08-review.png"), full_page=True)

    export = requests.get(
        f"{ui_server.url}/feedback/export?format=jsonl&text_contains={marker}",
        headers={"Authorization": f"Bearer {ui_server.reviewer_token}"},
        timeout=10,
    )
    decided = {row["id"]: row for row in map(json.loads, export.text.splitlines())}
    assert [decided[i]["status"] for i in ids] == ["accepted", "corrected", "rejected", "rejected"]
    assert decided[ids[1]]["review_label"] == "positive"
    assert {decided[i]["reviewed_by"] for i in ids} == {"ui reviewer"}
    context.close()
