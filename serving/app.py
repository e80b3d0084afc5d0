"""The app factory gunicorn runs: ``gunicorn -c serving/gunicorn.conf.py "serving.app:create_app()"``.

``create_app`` wires settings, the feedback store and the model manager into ``app.extensions["sentiflow"]``
and registers blueprints: ``api`` (public JSON API) and ``admin`` (token). A web page is one more blueprint:
add it to ``_register_ui`` below; API errors stay JSON whatever it does.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from flask import Flask, g, request

from sentiflow.config import MLflowSettings, ServerSettings
from serving import admin, api, metrics
from serving.errors import register_error_handlers
from serving.feedback import FeedbackStore
from serving.model_manager import ModelManager
from serving.prediction_ids import PredictionSigner, state_dir_secret
from serving.production import check_production_secrets
from serving.replicas import ReplicaStore


@dataclass
class ServerContext:
    """What every view reaches through ``current_app.extensions["sentiflow"]``."""

    settings: ServerSettings
    mlflow: MLflowSettings
    manager: ModelManager
    feedback: FeedbackStore
    #: Replica, worker and deployment rows in the shared database (issue 13).
    signer: PredictionSigner
    replicas: ReplicaStore | None = None


def _register_ui(app: Flask) -> None:
    """Place for the web page blueprint (issue 8): ``app.register_blueprint(ui.bp)``."""
    from serving import ui

    app.register_blueprint(ui.bp)


def _instrument(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.sentiflow_t0 = time.perf_counter()

    @app.after_request
    def _observe(response):
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        t0 = g.get("sentiflow_t0")
        if t0 is not None:
            metrics.LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - t0)
        metrics.REQUESTS.labels(
            endpoint=endpoint, method=request.method, status=str(response.status_code)
        ).inc()
        metrics.WORKER_REQUESTS.labels(worker=str(os.getpid())).inc()
        return response


def _rate_limit_feedback(app: Flask, settings: ServerSettings) -> None:
    """Flask-Limiter on ``POST /feedback`` per client address (429 JSON beyond the limit)."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    limiter = Limiter(
        key_func=get_remote_address, app=app, storage_uri=settings.rate_limit_storage_uri, default_limits=[]
    )
    endpoint = "api.post_feedback"
    app.view_functions[endpoint] = limiter.limit(settings.feedback_rate_limit)(app.view_functions[endpoint])


def _signer(settings: ServerSettings) -> PredictionSigner:
    secret = settings.prediction_secret.get_secret_value() if settings.prediction_secret else ""
    return PredictionSigner(secret or state_dir_secret(settings.state_dir))


def _register_feedback_loop(store: FeedbackStore) -> None:
    """Issue 7: wrong-flag alerts (window, log line, webhook) run on each stored feedback row.

    The window lives in the feedback database, so all workers share it (one alert per window).
    """
    from sentiflow.feedback.alerts import FeedbackAlerter, on_feedback_record, reset_default_alerter
    from serving.feedback import on_stored

    reset_default_alerter(FeedbackAlerter(flag_store=store))
    on_stored(on_feedback_record)


def create_app(
    settings: ServerSettings | None = None,
    mlflow_settings: MLflowSettings | None = None,
    *,
    start: bool = True,
) -> Flask:
    """Build the app; ``start=False`` skips loading a model (for tests of validation and auth only)."""
    settings = settings or ServerSettings()
    mlflow_settings = mlflow_settings or MLflowSettings()
    check_production_secrets(settings)  # SENTIFLOW_ENV=production: no placeholder secrets
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Explicit MLFLOW_* variables win; otherwise a down registry answers 503 in seconds, not minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.registry_timeout_s)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.registry_max_retries))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    replicas = ReplicaStore(settings.resolved_feedback_db_url)
    manager = ModelManager(settings, mlflow_settings, replicas=replicas)
    app.extensions["sentiflow"] = ServerContext(
        settings=settings,
        mlflow=mlflow_settings,
        manager=manager,
        feedback=FeedbackStore(settings.resolved_feedback_db_url),
        replicas=replicas,
        signer=_signer(settings),
    )
    register_error_handlers(app)
    _instrument(app)
    _register_feedback_loop(app.extensions["sentiflow"].feedback)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    _rate_limit_feedback(app, settings)
    _register_ui(app)
    if start:
        # A worker takes requests only after its startup load: a restart never answers 503 from a
        # half-started worker while its siblings are ready. Bounded, so a down registry cannot wedge it.
        manager.start().wait_started(settings.startup_wait_s)
    return app
