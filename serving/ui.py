"""The web page for non-technical users (``/ui/``) and the page-only JSON it needs.

The page itself is static HTML plus a little JavaScript: predict, feedback, deploy and the deployed model
go through the server's public API (``/predict``, ``/feedback``, ``/deploy``, ``/deploy/status``,
``/model``), so the page does nothing an API client could not. What the API does not offer lives here:

- ``GET /ui/api/models``: the registered models (the served one first).
- ``GET /ui/api/versions?metric=NAME&model=MODEL&dataset=D``: every version of ``MODEL`` (default: the served
  model; with ``D``, only versions trained on that dataset)
  with its run's metrics, family, dataset (short name, source, snapshot URI), the selection gate's decision
  (``gate.*`` tags) and date, and the best version by ``NAME`` (rules of ``sentiflow.gate.selection``).
- ``GET /ui/api/feedback/daily?days=N``: correct vs wrong flags per day and the production accuracy.

All URLs the page calls are built from ``request.script_root``, so it works behind a path prefix
(``SCRIPT_NAME``). The admin token is never rendered: the browser keeps it in ``sessionStorage``.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for

from sentiflow import names, registry
from sentiflow.gate.selection import Candidate, SelectionError, lower_is_better, pick_best
from serving.errors import ApiError
from serving.feedback import feedback_table

log = logging.getLogger(__name__)

bp = Blueprint(
    "ui",
    __name__,
    template_folder="templates",
    static_folder="static",
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
#: Metric columns of the versions table (the issue's list); the chosen ranking metric is added if missing.
TABLE_METRICS: tuple[str, ...] = (names.BEST_VAL_F1, names.VAL_ACCURACY, names.VAL_AUC)
MAX_VERSIONS = 200
MAX_DAYS = 366


def _server() -> Any:
    return current_app.extensions["sentiflow"]


@bp.get("/")
def root():
    """The bare server URL is where a person lands: send them to the page."""
    return redirect(url_for("ui.page"))


@bp.get("/ui/")
def page():
    settings = _server().settings
    return render_template(
        "ui/index.html",
        base=request.script_root,
        ranking_metrics=RANKING_METRICS,
        lower_is_better=[m for m in RANKING_METRICS if lower_is_better(m)],
        max_text_chars=settings.max_text_chars,
        max_texts=settings.max_texts,
    )


# --- versions ---------------------------------------------------------------------------------------
def _mlflow_client() -> Any:
    return registry.mlflow_client(_server().mlflow)


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


def _model_names(client: Any, served: str) -> list[str]:
    """Registered models, the served one first (one Airflow may keep several: ``registered_model_name``)."""
    found = sorted(m.name for m in client.search_registered_models(max_results=MAX_VERSIONS))
    return [served, *[n for n in found if n != served]]


@bp.get("/ui/api/models")
def models():
    server = _server()
    served = server.mlflow.registered_model_name
    try:
        listed = _model_names(_mlflow_client(), served)
    except Exception as exc:
        raise ApiError(
            503, f"cannot list registered models at {server.mlflow.tracking_uri}: {exc}",
            error="registry_unavailable",
        ) from exc  # fmt: skip
    return jsonify(served_model=served, models=listed)


@bp.get("/ui/api/versions")
def versions():
    metric = request.args.get("metric") or RANKING_METRICS[0]
    if metric not in RANKING_METRICS:
        raise ApiError(
            400, f"unknown metric {metric!r}; choose one of {list(RANKING_METRICS)}", error="unknown_metric"
        )
    server = _server()
    served_model = server.mlflow.registered_model_name
    model_name = request.args.get("model") or served_model
    if "'" in model_name or len(model_name) > 256:
        raise ApiError(400, f"invalid registered model name {model_name!r}", error="bad_model_name")
    try:
        rows = [
            {**row, "dataset": dataset_label(row["dataset_source"])}
            for row in registry.version_rows(_mlflow_client(), model_name, max_results=MAX_VERSIONS)
        ]
    except Exception as exc:
        raise ApiError(
            503,
            f"cannot read the versions of model {model_name!r} from the registry at "
            f"{server.mlflow.tracking_uri}: {exc}",
            error="registry_unavailable",
        ) from exc
    current = server.manager.current
    datasets = sorted({r["dataset"] for r in rows if r["dataset"]})
    dataset = request.args.get("dataset") or None
    if (
        dataset
    ):  # like against like: the best among versions of one dataset (metrics on the same kind of rows)
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
        versions=rows,
    )


# --- feedback ---------------------------------------------------------------------------------------
def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, f"query parameter {name!r} must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}, got {value}")
    return value


@bp.get("/ui/api/feedback/daily")
def feedback_daily():
    """Counts per UTC day, grouped in SQL (``date()`` exists in SQLite and Postgres), zero-filled."""
    days = _int_arg("days", 14, 1, MAX_DAYS)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    table = feedback_table
    day = sa.func.date(table.c.created_at)
    wrong = sa.func.sum(sa.case((table.c.correct, 0), else_=1))
    total = sa.func.count()
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    engine = _server().feedback.engine
    with engine.connect() as conn:
        per_day = conn.execute(
            sa.select(day, total, wrong).where(table.c.created_at >= start).group_by(day)
        ).all()
        all_total, all_wrong = conn.execute(sa.select(total, wrong).select_from(table)).one()
    counts: dict[date, tuple[int, int]] = {}
    for raw_day, n, n_wrong in per_day:
        d = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day)[:10])
        counts[d] = (int(n) - int(n_wrong or 0), int(n_wrong or 0))
    series = []
    for i in range(days):
        d = first + timedelta(days=i)
        correct_n, wrong_n = counts.get(d, (0, 0))
        series.append({"date": d.isoformat(), "correct": correct_n, "wrong": wrong_n})
    all_total = int(all_total or 0)
    all_wrong = int(all_wrong or 0)
    window_total = sum(p["correct"] + p["wrong"] for p in series)
    window_correct = sum(p["correct"] for p in series)
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
