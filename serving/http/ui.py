"""The web page for non-technical users (``/ui/``) and the page-only JSON it needs.

The page itself is static HTML plus a little JavaScript: predict, feedback, deploy and the deployed model
go through the server's public API (``/predict``, ``/feedback``, ``/deploy``, ``/deploy/status``,
``/model``), so the page does nothing an API client could not. What the API does not offer lives here:

- ``GET /ui/api/models``: the registered models (the served one first).
- ``GET /ui/api/versions?metric=NAME&model=MODEL&dataset=D``: every version of ``MODEL`` (default: the served
  model; with ``D``, only versions trained on that dataset)
  with its run's metrics, family, dataset (short name, source, snapshot URI), the selection gate's decision
  (``gate.*`` tags) and date, and the best version by ``NAME`` (``sentiflow.registry.pick_best``, the
  gate's rule).
- ``GET /ui/api/feedback/daily?days=N``: correct vs wrong flags per day and the production accuracy.

Run ids, dataset URIs (the source's path or URL, the snapshot's manifest) and the gate's DAG run id name
internals: a versions answer carries them only for a caller with the admin token (``ADMIN_ONLY``).

All URLs the page calls are built from ``request.script_root``, so it works behind a path prefix
(``SCRIPT_NAME``). The admin token is never rendered: the browser keeps it in ``sessionStorage``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from sentiflow import names
from sentiflow.names import lower_is_better
from sentiflow.registry import Candidate, SelectionError, pick_best
from serving.extension import server
from serving.http.auth import is_admin
from serving.http.errors import ApiError
from serving.http.queries import DailyFeedbackQuery, parse_query

log = logging.getLogger(__name__)

bp = Blueprint(
    "ui",
    __name__,
    template_folder="../templates",
    static_folder="../static",
    static_url_path="/ui/static",
)

#: Metrics a user may rank versions by (the drop-down), in the order shown; the default comes first.
RANKING_METRICS: tuple[str, ...] = (
    names.BEST_VAL_F1,
    *names.VAL_METRICS,
    *names.TEST_METRICS,
    names.PREDICT_TIME_MS_PER_1K,
    names.FIT_TIME_S,
)
#: Metric columns of the versions table; the chosen ranking metric is added if missing.
TABLE_METRICS: tuple[str, ...] = (names.BEST_VAL_F1, names.VAL_ACCURACY, names.VAL_AUC)
MAX_VERSIONS = 200
#: Fields of a version row, and of its gate decision, that only the admin token sees.
ADMIN_ONLY: tuple[str, ...] = ("run_id", "dataset_source", "dataset_uri")
ADMIN_ONLY_DECISION: tuple[str, ...] = ("dag_run_id", "candidate_run_id", "champion_scored_on")


def _public_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ADMIN_ONLY}
    if out.get("decision"):
        out["decision"] = {k: v for k, v in out["decision"].items() if k not in ADMIN_ONLY_DECISION}
    return out


@bp.get("/")
def root() -> ResponseReturnValue:
    """The bare server URL is where a person lands: send them to the page."""
    return redirect(url_for("ui.page"))


@bp.get("/ui/")
def page() -> ResponseReturnValue:
    settings = server().settings
    return render_template(
        "ui/index.html",
        base=request.script_root,
        ranking_metrics=RANKING_METRICS,
        lower_is_better=[m for m in RANKING_METRICS if lower_is_better(m)],
        max_text_chars=settings.max_text_chars,
        max_texts=settings.max_texts,
    )


# --- versions ---------------------------------------------------------------------------------------
def dataset_label(source: str | None) -> str | None:
    """A short name for the dataset column: ``imdb`` for ``/data/imdb``, the Hub name as it is.

    Older runs tagged the snapshot's manifest URI: those show the run folder the snapshot lives in.
    """
    if not source:
        return None
    text = source.rstrip("/")
    if text.endswith("/manifest.json"):
        parts = text.split("/")
        return f"snapshot {parts[-3]}" if len(parts) >= 3 else text
    if "://" in text or text.startswith(("/", ".", "~")) or text.count("/") > 1:
        return text.rsplit("/", 1)[-1] or text
    return text


def _registry_unavailable(what: str) -> ApiError:
    """A 503 for an anonymous caller: what failed, never where the registry is or its error's text (both
    go to the log under the request id the answer carries)."""
    return ApiError(503, f"{what}: the model registry is unavailable", error="registry_unavailable")


@bp.get("/ui/api/models")
def models() -> ResponseReturnValue:
    # Registered models, the served one first (one Airflow may keep several: ``registered_model_name``).
    registry = server().registry
    served = registry.name
    try:
        found = registry.model_names(max_results=MAX_VERSIONS)
    except Exception as exc:
        raise _registry_unavailable("cannot list the registered models") from exc
    return jsonify(served_model=served, models=[served, *[n for n in found if n != served]])


@bp.get("/ui/api/versions")
def versions() -> ResponseReturnValue:
    metric = request.args.get("metric") or RANKING_METRICS[0]
    if metric not in RANKING_METRICS:
        raise ApiError(
            400, f"unknown metric {metric!r}; choose one of {list(RANKING_METRICS)}", error="unknown_metric"
        )
    ext = server()
    served_model = ext.registry.name
    model_name = request.args.get("model") or served_model
    if "'" in model_name or len(model_name) > 256:
        raise ApiError(400, f"invalid registered model name {model_name!r}", error="bad_model_name")
    try:
        rows = [
            {**row, "dataset": dataset_label(row["dataset_source"])}
            for row in ext.registry.version_rows(model_name, max_results=MAX_VERSIONS)
        ]
    except Exception as exc:
        raise _registry_unavailable(f"cannot read the versions of model {model_name!r}") from exc
    current = ext.manager.current
    datasets = sorted({r["dataset"] for r in rows if r["dataset"]})
    dataset = request.args.get("dataset") or None
    # like against like: the best among versions of one dataset (metrics on the same kind of rows)
    if dataset:
        rows = [r for r in rows if r["dataset"] == dataset]
    candidates = [
        Candidate(version=r["version"], run_id=r["run_id"] or "", metrics=r["metrics"]) for r in rows
    ]
    best: dict[str, Any] | None = None
    why_no_best: str | None = None
    try:
        chosen = pick_best(candidates, metric)
        best = {"version": chosen.version, "value": chosen.value(metric)}
    except SelectionError as exc:
        why_no_best = str(exc)
    columns = list(TABLE_METRICS) + ([metric] if metric not in TABLE_METRICS else [])
    return jsonify(
        model_name=model_name,
        served_model=served_model,
        deployable=model_name == served_model,
        metric=metric,
        lower_is_better=lower_is_better(metric),
        columns=columns,
        best=best,
        why_no_best=why_no_best,
        datasets=datasets,
        dataset=dataset,
        serving_version=current.version if current and model_name == served_model else None,
        versions=rows if is_admin() else [_public_row(r) for r in rows],
    )


# --- feedback ---------------------------------------------------------------------------------------
@bp.get("/ui/api/feedback/daily")
def feedback_daily() -> ResponseReturnValue:
    """Counts per UTC day, grouped in SQL (``date()`` exists in SQLite and Postgres), zero-filled."""
    days = parse_query(DailyFeedbackQuery).days
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    counted = server().feedback.daily_counts(first)
    per_day = [(d, *counted.per_day.get(d, (0, 0))) for d in (first + timedelta(days=i) for i in range(days))]
    series = [{"date": d.isoformat(), "correct": c, "wrong": w} for d, c, w in per_day]
    all_total, all_wrong = counted.total, counted.wrong
    window_total = sum(c + w for _, c, w in per_day)
    window_correct = sum(c for _, c, _w in per_day)
    return jsonify(
        days=series,
        window={
            "days": days,
            "total": window_total,
            "correct": window_correct,
            "accuracy": window_correct / window_total if window_total else None,
        },
        all_time={
            "total": all_total,
            "correct": all_total - all_wrong,
            "accuracy": (all_total - all_wrong) / all_total if all_total else None,
        },
    )
