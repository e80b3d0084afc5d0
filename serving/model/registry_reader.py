"""The server's one path to the MLflow registry: every call it makes is here, and each one is counted.

The follower reads the alias, the manager loads versions, the web page lists models and versions: all
through the app's one ``RegistryReader`` (``server().registry``), which uses the shared registry module
(``sentiflow.registry``) and counts each call in ``sentiflow_server_registry_requests_total{call}``. Nothing
else in ``serving/`` builds an MLflow client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentiflow import names, registry
from sentiflow.families.catalogue import serving_runtime as family_runtime
from sentiflow.registry import ModelNotFoundError, RegistryUnavailableError
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving import metrics
from serving.model.downloads import ModelDownloads
from serving.model.loaded import LoadedModel, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["ModelNotFoundError", "RegistryReader", "RegistryUnavailableError"]

#: Run metrics ``GET /model`` shows for the served version.
KEY_METRICS = (
    names.VAL_F1,
    names.VAL_ACCURACY,
    names.VAL_AUC,
    names.BEST_VAL_F1,
    names.split_metric("test", "f1"),
    names.split_metric("test", "accuracy"),
    names.PREDICT_TIME_MS_PER_1K,
)


class RegistryReader:
    """Read an alias, load a version with its run metrics, list models and versions: it never writes.

    The pipeline alone moves aliases and creates or tags versions; the server's identity may only read.
    ``call`` labels of the metric: ``alias`` and ``version`` (a version record), ``load`` (a download, once
    per replica and version), ``models`` and ``versions`` (the web page's lists).
    """

    def __init__(self, settings: MLflowSettings, server: ServerSettings | None = None) -> None:
        self.settings = settings
        self.name = settings.registered_model_name
        #: The server's settings (its state folder holds the downloaded versions).
        self.server = server or ServerSettings()
        #: This replica's downloaded versions, shared by its workers (under its state folder).
        self.downloads = ModelDownloads(
            self.server.state_dir / "models", on_download=lambda: self._count("load")
        )

    @property
    def tracking_uri(self) -> str:
        return self.settings.tracking_uri

    def client(self) -> MlflowClient:
        """The server's own identity: it reads the alias and downloads artifacts, nothing else."""
        return registry.mlflow_client(self.settings)

    @staticmethod
    def _count(call: str) -> None:
        metrics.REGISTRY_REQUESTS.labels(call=call).inc()

    # --- reading ---------------------------------------------------------------------------------------
    def resolve(self, *, version: str | None = None, alias: str | None = None) -> ModelVersion:
        """The registry's ``ModelVersion`` for a version or an alias (errors name the registry)."""
        self._count("alias" if alias is not None else "version")
        return registry.get_version(self.client(), self.settings, version=version, alias=alias)

    def aliases(self) -> dict[str, str]:
        """Every alias of the model and its version, in one request (the follower reads the served alias and
        the release's candidate together); ``RegistryUnavailableError`` names the registry."""
        self._count("alias")
        return registry.alias_versions(self.client(), self.settings)

    def _public_keys(self, version: str) -> list[str] | None:
        """The keys approvals verify with; None on a development stack that serves unsigned versions."""
        from sentiflow.security.signing import SignatureError

        keys = [k for k in self.server.signing_public_keys if k]
        if keys:
            return keys
        if self.server.allow_unsigned_models:
            return None
        raise SignatureError(
            f"version {version} is not loaded: no public key configured to verify its approval"
        )

    def approval(self, mv: ModelVersion) -> str | None:
        """Why ``mv`` may be served: its signed approval (``sentiflow.security.approval``), the newest of the
        model; ``SignatureError`` says why not. None on a development stack that loads unsigned versions."""
        from sentiflow.security.approval import check_servable

        keys = self._public_keys(str(mv.version))
        if keys is None:
            return None
        return check_servable(mv, self._every_version(), keys).reason

    def _every_version(self) -> list[ModelVersion]:
        self._count("versions")
        return self.client().search_model_versions(f"name='{self.name}'")

    def approval_of(self, model: LoadedModel) -> str | None:
        """``approval`` of a version loaded ahead of its approval (staged), from one registry request: the
        version's record as the registry has it now, which must still name the logged model that was
        loaded."""
        from sentiflow.security.approval import check_servable
        from sentiflow.security.signing import SignatureError, version_model_id

        keys = self._public_keys(model.version)
        if keys is None:
            return None
        every = self._every_version()
        mv = next((v for v in every if str(v.version) == model.version), None)
        if mv is None:
            raise SignatureError(f"version {model.version} of {self.name!r} is no longer in the registry")
        if version_model_id(mv) != model.model_id:
            raise SignatureError(
                f"version {model.version} of {self.name!r} now names model {version_model_id(mv)}, "
                f"not the staged {model.model_id}"
            )
        return check_servable(mv, every, keys).reason

    def load(self, version: str) -> LoadedModel:
        """Version ``version``, when the pipeline approved it (``approval``): downloaded once per replica,
        verified and deserialized by this worker."""
        mv = self.resolve(version=version)
        self.approval(mv)  # before anything is downloaded: an unapproved version costs one registry read
        return self._materialize(mv)

    def load_unapproved(self, version: str) -> LoadedModel:
        """Version ``version`` downloaded, its signature verified and deserialized, with no approval check:
        only for staging, never for serving (``ModelManager.swap_in`` checks ``approval_of`` first)."""
        return self._materialize(self.resolve(version=version))

    def _materialize(self, mv: ModelVersion) -> LoadedModel:
        from sentiflow.security.signing import load_for_serving, version_model_id

        uri = f"models:/{self.name}/{mv.version}"
        model_id = version_model_id(mv)
        key = f"{self.name}-v{mv.version}-{model_id or mv.run_id or 'norun'}"
        local = self.downloads.local_copy(uri, key)  # a download counts once per replica, by its downloader
        pyfunc = load_for_serving(uri, mv, local)  # verifies the signature before deserializing
        classifier = pyfunc.unwrap_python_model().classifier
        return LoadedModel(
            version=str(mv.version),
            name=self.name,
            run_id=mv.run_id,
            family=getattr(classifier, "family", "unknown"),
            label_names=list(classifier.label_names),
            metrics=registry.run_metrics(self.client(), mv.run_id, KEY_METRICS),
            loaded_at=now_iso(),
            source=uri,
            classifier=classifier,
            runtime=family_runtime(getattr(classifier, "family", "")),
            model_id=model_id,
        )

    def model_names(self, *, max_results: int) -> list[str]:
        """Registered model names, sorted."""
        self._count("models")
        return sorted(m.name for m in self.client().search_registered_models(max_results=max_results))

    def version_rows(self, model_name: str, *, max_results: int) -> list[dict[str, Any]]:
        """Every version of ``model_name`` with its run's metrics (``sentiflow.registry.version_rows``)."""
        self._count("versions")
        return registry.version_rows(self.client(), model_name, max_results=max_results)
