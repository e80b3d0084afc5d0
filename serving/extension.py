"""The model server's collaborators, owned by one Flask app (the Flask extension pattern).

``create_app`` builds one ``ServerExtension`` from settings and keeps it as ``app.extensions["sentiflow"]``:
the settings, the MLflow registry client, the model manager (with its micro-batcher), the feedback store,
the replica rows, the prediction-id signer,
the listeners that react to stored feedback, the wrong-flag alerter and the production sampler. Nothing
lives at module level, so two apps in one process (tests) share nothing and no test resets globals.
Process-wide setup (logging, MLflow's environment variables) is the entrypoint's job (``serving.process``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flask import Flask, current_app

from sentiflow.config import AlertSettings, DriftSettings, MLflowSettings, ServerSettings
from sentiflow.feedback.alerts import FeedbackAlerter
from sentiflow.feedback.sampling import ProductionSampler
from serving.http.prediction_ids import PredictionSigner, state_dir_secret
from serving.model.batcher import MicroBatcher
from serving.model.manager import ModelManager, Registry
from serving.store.feedback import FeedbackRecord, FeedbackStore
from serving.store.replicas import ReplicaStore

log = logging.getLogger(__name__)

EXTENSION_KEY = "sentiflow"
FeedbackListener = Callable[[FeedbackRecord], object]


@dataclass
class ServerExtension:
    """What every view reaches through ``server()`` (``current_app.extensions["sentiflow"]``)."""

    settings: ServerSettings
    mlflow: MLflowSettings
    registry: Registry
    manager: ModelManager
    feedback: FeedbackStore
    #: Replica, worker and deployment rows in the shared database (the same URL as feedback).
    replicas: ReplicaStore
    #: Signs each prediction's id; ``/feedback`` must cite one.
    signer: PredictionSigner
    alerter: FeedbackAlerter
    #: None when ``SENTIFLOW_DRIFT_SAMPLE_ENABLED=false``.
    sampler: ProductionSampler | None
    feedback_listeners: list[FeedbackListener] = field(default_factory=list)

    @classmethod
    def from_settings(
        cls,
        settings: ServerSettings,
        mlflow_settings: MLflowSettings,
        *,
        alert_settings: AlertSettings | None = None,
        drift_settings: DriftSettings | None = None,
    ) -> ServerExtension:
        """One set of collaborators; the alerter listens to stored feedback (its window is in the feedback
        database, so all workers share it: one alert per window)."""
        registry = Registry(mlflow_settings)
        store = FeedbackStore(settings.resolved_feedback_db_url)
        replicas = ReplicaStore(settings.resolved_feedback_db_url)
        drift = drift_settings or DriftSettings()
        secret = settings.prediction_secret.get_secret_value() if settings.prediction_secret else ""
        extension = cls(
            settings=settings,
            mlflow=mlflow_settings,
            registry=registry,
            manager=ModelManager(settings, mlflow_settings, registry=registry, replicas=replicas),
            feedback=store,
            replicas=replicas,
            signer=PredictionSigner(secret or state_dir_secret(settings.state_dir)),
            alerter=FeedbackAlerter(alert_settings, flag_store=store),
            sampler=ProductionSampler(drift) if drift.sample_enabled else None,
        )
        extension.on_feedback_stored(extension.alerter.on_record)
        return extension

    def init_app(self, app: Flask) -> ServerExtension:
        app.extensions[EXTENSION_KEY] = self
        return self

    @property
    def batcher(self) -> MicroBatcher:
        return self.manager.batcher

    def on_feedback_stored(self, listener: FeedbackListener) -> FeedbackListener:
        """Run ``listener(record)`` after each committed feedback row (usable as a decorator)."""
        if listener not in self.feedback_listeners:
            self.feedback_listeners.append(listener)
        return listener

    def notify_feedback_stored(self, record: FeedbackRecord) -> None:
        """Call every listener; one that fails is logged and never fails the request (the row is safe)."""
        for listener in list(self.feedback_listeners):
            try:
                listener(record)
            except Exception:
                log.exception("feedback listener %r failed for row %s", listener, record.id)

    def record_predictions(self, texts: Sequence[str], labels: Sequence[str], model_version: str) -> None:
        """The drift sample's hook after each ``/predict`` (never raises, never blocks on S3)."""
        if self.sampler is not None:
            self.sampler.record_safely(texts, labels, model_version)

    def close(self) -> None:
        """Stop this app's threads and connections (tests that build many apps; a worker's exit)."""
        self.manager.stop()
        if self.sampler is not None:
            self.sampler.close()
        self.feedback.dispose()


def server(app: Flask | None = None) -> ServerExtension:
    """The extension of ``app`` (default: the app handling the current request)."""
    return (app or current_app).extensions[EXTENSION_KEY]
