"""The model server's collaborators, owned by one Flask app (the Flask extension pattern).

``create_app`` builds one ``ServerExtension`` from settings and keeps it as ``app.extensions["sentiflow"]``:
the settings, the followed alias and this replica's id, the one registry object (every registry call of the
server, counted), the model manager (with its micro-batcher) and the alias follower that drives it, the
shared database with its stores (feedback, replica rows), the release runs it asks Airflow for, the
prediction-id signer, the listeners that react to stored feedback, the wrong-flag alerter and the
production sampler. Views reach it through ``server()``. Nothing lives at module level, so two apps in one
process (tests) share nothing and no test resets globals.
Process-wide setup (logging, MLflow's environment variables) is the entrypoint's job (``serving.process``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flask import Flask, current_app

from sentiflow.feedback.alerts import FeedbackAlerter
from sentiflow.feedback.production_sample import ProductionSampler
from sentiflow.settings.components import AlertSettings, DriftSettings, MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.model.follower import AliasFollower
from serving.model.manager import ModelManager
from serving.model.registry_reader import RegistryReader
from serving.prediction_ids import PredictionSigner, state_dir_secret
from serving.production import secret_value
from serving.releases import ReleaseRuns
from serving.store.db import Database
from serving.store.feedback import FeedbackRecord, FeedbackStore
from serving.store.migrate import open_database
from serving.store.replicas import ReplicaStore

log = logging.getLogger(__name__)

EXTENSION_KEY = "sentiflow"
FeedbackListener = Callable[[FeedbackRecord], object]


@dataclass
class ServerExtension:
    """What every view reaches through ``server()`` (``current_app.extensions["sentiflow"]``)."""

    settings: ServerSettings
    mlflow: MLflowSettings
    #: The registry alias every worker of every replica serves (``SENTIFLOW_SERVER_FOLLOW_ALIAS``).
    alias: str
    #: This replica's id in the shared database (``SENTIFLOW_SERVER_REPLICA_ID``; one per gunicorn start).
    replica_id: str
    #: Every registry call of the server goes through it (and is counted).
    registry: RegistryReader
    manager: ModelManager
    #: Keeps ``manager`` serving the alias's version and reports it in the replica rows.
    follower: AliasFollower
    #: The shared database (``SENTIFLOW_SERVER_FEEDBACK_DB_URL``) and the stores on it.
    db: Database
    feedback: FeedbackStore
    replicas: ReplicaStore
    #: Manual releases: runs of the release DAG in Airflow (``POST /deploy``); the server moves no alias.
    releases: ReleaseRuns
    #: Signs each prediction's id; ``/feedback`` must cite one.
    signer: PredictionSigner
    alerter: FeedbackAlerter
    #: None when ``SENTIFLOW_DRIFT_SAMPLE_ENABLED=false``.
    sampler: ProductionSampler | None
    feedback_listeners: list[FeedbackListener] = field(default_factory=list)
    #: Background jobs started with the app; ``close`` stops them.
    closers: list[Callable[[], object]] = field(default_factory=list)

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
        alias = settings.follow_alias or mlflow_settings.champion_alias
        # host name plus process id: unique per replica (gunicorn.conf.py sets one id for all its workers)
        replica_id = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        registry = RegistryReader(mlflow_settings, settings)
        db = open_database(settings.resolved_feedback_db_url, settings.schema_wait_s)
        store = FeedbackStore(db)
        replicas = ReplicaStore(db)
        manager = ModelManager(settings, registry)
        drift = drift_settings or DriftSettings()
        secret = secret_value(settings.prediction_secret)
        extension = cls(
            settings=settings,
            mlflow=mlflow_settings,
            alias=alias,
            replica_id=replica_id,
            registry=registry,
            manager=manager,
            follower=AliasFollower(
                manager,
                registry,
                replicas,
                settings,
                alias=alias,
                replica_id=replica_id,
                candidate_alias=mlflow_settings.candidate_alias,
            ),
            db=db,
            feedback=store,
            replicas=replicas,
            releases=ReleaseRuns(settings),
            signer=PredictionSigner(secret or state_dir_secret(settings.state_dir)),
            alerter=FeedbackAlerter(alert_settings, flag_store=store),
            sampler=ProductionSampler(drift) if drift.sample_enabled else None,
        )
        extension.on_feedback_stored(extension.alerter.on_record)
        return extension

    def init_app(self, app: Flask) -> ServerExtension:
        app.extensions[EXTENSION_KEY] = self
        return self

    def start(self, wait_s: float) -> bool:
        """Start following the alias; block until the first load attempt ended (loaded, or failed for now)
        or ``wait_s`` passed. True when it ended in time."""
        self.follower.start()
        return self.follower.started.wait(wait_s)

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
        for close in self.closers:
            close()
        self.follower.stop()
        self.manager.batcher.stop()
        if self.sampler is not None:
            self.sampler.close()
        self.db.dispose()


def server(app: Flask | None = None) -> ServerExtension:
    """The extension of ``app`` (default: the app handling the current request): the one accessor views,
    decorators and hooks use."""
    extension: ServerExtension = (app or current_app).extensions[EXTENSION_KEY]
    return extension
