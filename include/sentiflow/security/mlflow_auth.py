"""MLflow clients that carry an explicit identity, for processes that act as more than one user.

MLflow reads its basic-auth credentials from ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, which
are process-wide: every ``MlflowClient`` and every fluent call in the process is the same user. An Airflow
task takes its identity from a connection, not from its environment, and tooling that provisions users acts
as each of them in turn. ``client_for`` builds an ``MlflowClient`` whose tracking and registry REST stores
send the given credentials (``MlflowHostCreds``) and nothing else, whatever the environment says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

#: MLflow's own variables for basic auth (what ``mlflow`` clients read when no identity is given).
ENV_USERNAME = "MLFLOW_TRACKING_USERNAME"
ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"


@dataclass(frozen=True)
class MlflowIdentity:
    """One MLflow basic-auth user. ``repr`` never shows the password."""

    username: str
    password: SecretStr

    @classmethod
    def of(cls, username: str | None, password: SecretStr | str | None) -> MlflowIdentity | None:
        """An identity when both parts are non-empty, else None (the caller decides what "none" means)."""
        secret = password.get_secret_value() if isinstance(password, SecretStr) else (password or "")
        if not username or not secret:
            return None
        return cls(username=username, password=SecretStr(secret))

    def env(self) -> dict[str, str]:
        """The variables a child process (the trainer, the MLflow CLI) reads for this identity."""
        return {ENV_USERNAME: self.username, ENV_PASSWORD: self.password.get_secret_value()}


def host_creds(tracking_uri: str, identity: MlflowIdentity | None) -> Any:
    """``MlflowHostCreds`` for ``tracking_uri`` with exactly this identity (None: anonymous)."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    if identity is None:
        return MlflowHostCreds(host=tracking_uri)
    return MlflowHostCreds(
        host=tracking_uri, username=identity.username, password=identity.password.get_secret_value()
    )


def client_for(tracking_uri: str, identity: MlflowIdentity | None) -> Any:
    """An ``MlflowClient`` (tracking + registry) that authenticates as ``identity`` (None: anonymous).

    It replaces the client's two REST stores by ones bound to explicit ``MlflowHostCreds``; MLflow has no
    public argument for this, so the subclasses below touch ``_tracking_client`` and
    ``_get_registry_client`` (checked by ``tests/integration/security/test_mlflow_auth.py`` against the
    pinned MLflow).
    Artifact downloads (``mlflow.pyfunc.load_model``) do not go through it: they use the process identity.
    """
    from mlflow import MlflowClient
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    creds = host_creds(tracking_uri, identity)

    def get_creds() -> Any:
        return creds

    class _Tracking(TrackingServiceClient):
        @property
        def store(self) -> Any:
            return TrackingRestStore(get_creds)

    class _Registry(ModelRegistryClient):
        @property
        def store(self) -> Any:
            return RegistryRestStore(get_creds)

    class _Client(MlflowClient):
        def __init__(self) -> None:
            super().__init__(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            self._tracking_client = _Tracking(tracking_uri)
            self._registry_client_lazy = _Registry(tracking_uri, tracking_uri)

        def _get_registry_client(self) -> Any:
            return self._registry_client_lazy

    return _Client()
