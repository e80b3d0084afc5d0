"""A small typed client of the model server, used by the DAG's deploy and inference-check tasks.

Every failure raises ``ModelServerError`` naming the URL and the server's JSON message, so an Airflow log
says what went wrong without a trace through ``requests``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    import pandas as pd


class ModelServerError(RuntimeError):
    """A call to the model server failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, url: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body


class ReplicaLoadError(ModelServerError):
    """A replica reported that it could not load the version being released."""


class ReplicaStagingError(ModelServerError):
    """A replica reported that it could not stage the version about to be released."""


@dataclass(frozen=True)
class PredictResult:
    model_version: str
    labels: list[str]
    label_ids: list[int]
    scores: list[dict[str, float]]
    #: Signed id per text: what ``feedback`` must cite.
    prediction_ids: list[str] = field(default_factory=list)


class ModelServerClient:
    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.session = requests.Session()

    @classmethod
    def from_settings(cls) -> ModelServerClient:
        from sentiflow.settings.server import ServerSettings

        settings = ServerSettings()
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        return cls(settings.url, token)

    # --- plumbing ------------------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, *, admin: bool = False, timeout_s: float | None = None, **kwargs: Any
    ) -> requests.Response:
        url = f"{self.url}{path}"
        headers = kwargs.pop("headers", {})
        if admin:
            if not self.token:
                raise ModelServerError(f"{method} {url} needs an admin token and none was given", url=url)
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.session.request(
                method, url, headers=headers, timeout=timeout_s or self.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise ModelServerError(
                f"model server at {self.url} unreachable ({method} {path}): {exc}", url=url
            ) from exc
        if response.status_code >= 400 or (
            response.status_code == 202 and kwargs.get("params", {}).get("wait")
        ):
            try:
                body: Any = response.json()
                detail = body.get("message", body)
            except ValueError:
                body, detail = response.text, response.text[:500]
            raise ModelServerError(
                f"{method} {url} answered {response.status_code}: {detail}",
                url=url,
                status=response.status_code,
                body=body,
            )
        return response

    # --- API -----------------------------------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        """``/model``: version, family, key metrics, loaded_at; with a token its run id and source too
        (raises if none is loaded)."""
        return self._request("GET", "/model", admin=bool(self.token)).json()

    def predict(self, texts: list[str] | str) -> PredictResult:
        texts = [texts] if isinstance(texts, str) else list(texts)
        body = self._request("POST", "/predict", json={"texts": texts}).json()
        preds = body["predictions"]
        return PredictResult(
            model_version=str(body["model_version"]),
            labels=[p["label"] for p in preds],
            label_ids=[int(p["label_id"]) for p in preds],
            scores=[p["scores"] for p in preds],
            prediction_ids=[str(p.get("prediction_id", "")) for p in preds],
        )

    def feedback(
        self, prediction_id: str, text: str, *, correct: bool, true_label: str | None = None
    ) -> dict[str, Any]:
        """``POST /feedback`` citing the signed id ``predict`` returned for ``text``; the stored row."""
        body: dict[str, Any] = {"prediction_id": prediction_id, "text": text, "correct": correct}
        if true_label is not None:
            body["true_label"] = true_label
        return self._request("POST", "/feedback", json=body).json()

    def deploy(
        self,
        version: str | int,
        requested_by: str,
        *,
        force_promote: bool = False,
        force_reason: str | None = None,
        wait: bool = True,
        timeout_s: float = 600.0,
    ) -> dict[str, Any]:
        """``POST /deploy``: ask the server to have Airflow run the release DAG on ``version``; the run
        (``dag_run_id``, ``state``, ``airflow_url``). With ``wait``, once the run ended.

        Raises ``ModelServerError``: 422 for a failed run (its ``failed_tasks`` in ``body``), 503 when the
        server has no Airflow or cannot reach it, 202 when the run outlasted ``timeout_s``.
        """
        body: dict[str, Any] = {"version": str(version), "requested_by": requested_by}
        if force_promote:
            body.update(force_promote=True, force_reason=force_reason)
        params = {"wait": "true", "timeout": str(timeout_s)} if wait else {}
        response = self._request(
            "POST", "/deploy", admin=True, json=body, params=params, timeout_s=timeout_s + 30
        )
        return response.json()

    def release_run(self, dag_run_id: str) -> dict[str, Any]:
        """``GET /deploy/status``: the release run as Airflow has it now (a failed run raises, 422)."""
        return self._request("GET", "/deploy/status", admin=True, params={"id": dag_run_id}).json()

    def replicas(self) -> dict[str, Any]:
        """``/replicas``: the followed alias and every live replica with its workers; with a token, their
        hosts and load errors too (the server shows those to the admin token only)."""
        return self._request("GET", "/replicas", admin=bool(self.token)).json()

    def _poll(
        self,
        path: str,
        check: Callable[[dict[str, Any]], tuple[bool, Any]],
        failure: str,
        *,
        timeout_s: float,
        poll_s: float,
        since: str = "",
    ) -> dict[str, Any]:
        """GET ``path`` until ``check(answer)`` says done; ``check`` raises a replica's failure itself and
        otherwise returns (done, what to report at the timeout). An unreachable server is retried."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            try:
                answer = self._request("GET", path, admin=bool(self.token)).json()
                done, last = check(answer)
                if done:
                    return answer
            except (ReplicaLoadError, ReplicaStagingError):
                raise
            except ModelServerError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ModelServerError(
                    f"{failure} within {timeout_s:.0f}s ({since}last: {last})", url=f"{self.url}{path}"
                )
            time.sleep(poll_s)

    def wait_for_replicas(
        self, version: str | int, timeout_s: float = 300.0, poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Poll ``/replicas`` until every live replica serves ``version``; return that answer.

        Raises ``ReplicaLoadError`` as soon as a live replica reports a failed load of ``version`` (after this
        call began), and ``ModelServerError`` naming each replica's version after ``timeout_s``.
        """
        version = str(version)
        started = time.time()

        def check(answer: dict[str, Any]) -> tuple[bool, Any]:
            replicas = answer.get("replicas") or []
            failed = [
                (r, w)
                for r in replicas
                for w in r.get("workers", [])
                if w.get("error_version") == version and (w.get("error_at") or 0) >= started - 1
            ]
            if failed:
                replica, worker = failed[0]
                why = worker.get("load_error") or "the admin token shows why"
                raise ReplicaLoadError(
                    f"replica {replica['replica_id']} (worker {worker['worker_id']}) could not load "
                    f"version {version}: {why}",
                    url=f"{self.url}/replicas",
                    body=answer,
                )
            done = bool(replicas) and all(r.get("version") == version for r in replicas)
            return done, {r["replica_id"]: r.get("version") or r.get("state") for r in replicas}

        return self._poll(
            "/replicas",
            check,
            f"not every replica behind {self.url} served version {version}",
            timeout_s=timeout_s,
            poll_s=poll_s,
            since=f"waited since {time.ctime(started)}; ",
        )

    def wait_for_staged(
        self, version: str | int, timeout_s: float = 60.0, poll_s: float = 0.5
    ) -> dict[str, Any]:
        """Poll ``/replicas`` until every worker of every live replica holds ``version`` staged (or serves it
        already); return that answer.

        Raises ``ReplicaStagingError`` as soon as a worker reports a failed staging of ``version``, and
        ``ModelServerError`` naming each replica's staged version after ``timeout_s``.
        """
        version = str(version)

        def check(answer: dict[str, Any]) -> tuple[bool, Any]:
            replicas = answer.get("replicas") or []
            workers = [(r, w) for r in replicas for w in r.get("workers", [])]
            for replica, worker in workers:
                if worker.get("staging_error_version") == version:
                    why = worker.get("staging_error") or "its reason is shown to the admin token"
                    raise ReplicaStagingError(
                        f"replica {replica['replica_id']} (worker {worker['worker_id']}) could not stage "
                        f"version {version}: {why}",
                        url=f"{self.url}/replicas",
                        body=answer,
                    )
            done = bool(workers) and all(
                version in (w.get("staged_version"), w.get("version")) for _, w in workers
            )
            return done, {r["replica_id"]: r.get("staged_version") or r.get("state") for r in replicas}

        return self._poll(
            "/replicas",
            check,
            f"not every replica behind {self.url} staged version {version}",
            timeout_s=timeout_s,
            poll_s=poll_s,
        )

    def wait_for_version(
        self, version: str | int, timeout_s: float = 300.0, poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Poll ``/model`` until it names ``version``; raise naming the URL and the last answer if not."""
        return self._poll(
            "/model",
            lambda info: (str(info.get("version")) == str(version), info.get("version")),
            f"model server at {self.url} did not serve version {version}",
            timeout_s=timeout_s,
            poll_s=poll_s,
        )

    def feedback_export(
        self,
        fmt: str = "csv",
        *,
        since_id: int = 0,
        limit: int | None = None,
        status: str = "all",
        since_review: int | None = None,
    ) -> bytes:
        """Feedback rows (id, created_at, text, predicted_label, correct, true_label, model_version,
        verified, status, review_label, review_seq, reviewed_by, ...); needs the reviewer token.
        ``status="trainable"`` with ``since_review`` is the training export."""
        # requests leaves out the parameters that are None
        params = dict(format=fmt, since_id=since_id, status=status, limit=limit, since_review=since_review)
        return self._request("GET", "/feedback/export", admin=True, params=params).content

    def feedback_frame(
        self, *, since_id: int = 0, status: str = "all", since_review: int | None = None
    ) -> pd.DataFrame:
        """The export as a pandas frame (parquet keeps types)."""
        import io

        import pandas as pd

        payload = self.feedback_export("parquet", since_id=since_id, status=status, since_review=since_review)
        return pd.read_parquet(io.BytesIO(payload))


@dataclass(frozen=True)
class ServerEndpoint:
    """Where the model server answers and the pipeline's two tokens for it, from its Airflow connection:
    ``token`` (the password: the admin token, whose ``/replicas`` and ``/model`` say why a replica could
    not load a release) and ``reviewer_token`` (the extra field of that name: the training export of
    reviewed feedback)."""

    url: str
    token: str | None
    reviewer_token: str | None = None
