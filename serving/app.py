"""The app factory gunicorn runs: ``gunicorn -c serving/gunicorn.conf.py "serving.app:create_app()"``.

``create_app`` builds the app's collaborators from settings into one extension object,
``app.extensions["sentiflow"]`` (``serving.extension.ServerExtension``), and registers blueprints: ``api``
(public JSON API), ``admin`` (admin token), ``review`` (reviewer token) and ``ui`` (the web page); API
errors stay JSON whatever a page does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider

from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving import metrics
from serving.extension import ServerExtension
from serving.http import admin, api, review, ui
from serving.http.errors import register_error_handlers
from serving.production import check_production_secrets


class _UnsortedJSON(DefaultJSONProvider):
    """Answers keep the key order the views build them in (``model_version`` before ``predictions``)."""

    sort_keys = False


def _instrument(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.sentiflow_t0 = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        t0 = g.get("sentiflow_t0")
        if t0 is not None:
            metrics.LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - t0)
        metrics.REQUESTS.labels(
            endpoint=endpoint, method=request.method, status=str(response.status_code)
        ).inc()
        metrics.WORKER_REQUESTS.labels(worker=str(os.getpid())).inc()
        return response


def _drain_unread_body(app: Flask) -> None:
    """Read what is left of a request body the view did not (a 429 or a 503 answered before parsing).

    gunicorn drains at most 64 KiB of an unread body and otherwise closes the connection, and a socket
    closed with unread data is reset: a client still sending a large refused request would see a
    connection error instead of its 429 or 503. ``MAX_CONTENT_LENGTH`` bounds what is read.
    """

    @app.after_request
    def _drain(response: Response) -> Response:
        length = request.content_length or 0
        if 0 < length <= (app.config["MAX_CONTENT_LENGTH"] or 0):
            try:
                while request.stream.read(64 * 1024):
                    pass
            except Exception:  # the client went away: nothing left to protect
                pass
        return response


def _trust_proxies(app: Flask, settings: ServerSettings) -> None:
    """Behind ``trusted_proxy_hops`` proxies the client is the address that many hops back in
    ``X-Forwarded-For`` (werkzeug's ``ProxyFix``); with 0 the header is ignored. Only the values the trusted
    proxies appended count, so a client cannot choose its own address (and its rate-limit key) by sending
    the header itself: nginx appends the peer it saw after whatever the client sent."""
    if settings.trusted_proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        fixed = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=0, x_host=0, x_prefix=0)
        vars(app)["wsgi_app"] = fixed  # Flask's documented middleware hook, as an instance attribute


def _rate_limit(app: Flask, settings: ServerSettings) -> None:
    """Flask-Limiter per client address (429 JSON with ``Retry-After`` beyond a limit), one limiter for the
    three limited surfaces, each limit defined once in ``ServerSettings``: ``POST /predict``
    (``predict_rate_limit``), ``POST /feedback`` (``feedback_rate_limit``) and every ``/ui/api/*`` view
    together (``ui_api_rate_limit``, one count shared by the page's JSON endpoints).

    The counters live in ``rate_limit_storage_uri``: with ``redis://`` every worker of every replica counts
    against one limit (in memory each worker would allow the whole limit on its own). If the storage
    cannot be reached the limit falls back to per-worker memory counters and logs it, instead of failing
    the endpoints with a 500: a Redis outage weakens the limit, it does not take the endpoint down.
    """
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    limiter = Limiter(
        key_func=get_remote_address,  # request.remote_addr: the peer, or the client ProxyFix found
        app=app,
        storage_uri=settings.rate_limit_storage_uri,
        key_prefix="sentiflow",
        default_limits=[],
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    # the registered views are the functions themselves (``@document`` returns the view it marks)
    limits: dict[str, Callable[[Callable[..., Any]], Any]] = {
        "api.predict": limiter.limit(settings.predict_rate_limit),
        "api.post_feedback": limiter.limit(settings.feedback_rate_limit),
    }
    ui_api = limiter.shared_limit(settings.ui_api_rate_limit, scope="ui-api")
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/ui/api/"):
            limits.setdefault(rule.endpoint, ui_api)
    for endpoint, limit in limits.items():
        app.view_functions[endpoint] = limit(app.view_functions[endpoint])

    @app.after_request
    def _retry_after(response: Response) -> Response:
        """A 429 says when the client's window resets (Flask-Limiter's own headers would also go on every
        200)."""
        current = limiter.current_limit
        if response.status_code == 429 and current is not None and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(max(1, int(current.reset_at - time.time())))
        return response


def create_app(
    settings: ServerSettings | None = None,
    mlflow_settings: MLflowSettings | None = None,
    *,
    start: bool = True,
) -> Flask:
    """Build the app; ``start=False`` skips loading a model (for tests of validation and auth only).

    Its collaborators (registry client, model manager and batcher, feedback store and listeners, alerter,
    production sampler) are made here from settings and live on the app (``serving.extension``). Nothing
    process-wide happens here: logging and MLflow's environment are the entrypoint's (``serving.process``).
    """
    settings = settings or ServerSettings()
    mlflow_settings = mlflow_settings or MLflowSettings()
    check_production_secrets(settings)  # SENTIFLOW_ENV=production: no placeholder secrets
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = _UnsortedJSON(app)
    extension = ServerExtension.from_settings(settings, mlflow_settings).init_app(app)
    register_error_handlers(app)
    _instrument(app)
    _drain_unread_body(app)
    for blueprint in (api.bp, admin.bp, review.bp, ui.bp):
        app.register_blueprint(blueprint)
    _trust_proxies(app, settings)
    _rate_limit(app, settings)  # after every blueprint: it wraps the registered views
    if start:
        # A worker takes requests only after its startup load: a restart never answers 503 from a
        # half-started worker while its siblings are ready. Bounded, so a down registry cannot wedge it.
        extension.start(settings.startup_wait_s)
    return app
