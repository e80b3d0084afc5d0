"""Manual releases are Airflow runs of the release DAG: the server asks for one and reports its state.

The server never moves an alias. ``POST /deploy`` triggers a run of ``names.RELEASE_DAG`` through Airflow's
REST API v2 (``POST /api/v2/dags/{dag_id}/dagRuns``; its conf names the version, who asked and any override
of the gate), and ``/deploy/status`` reads that run back (``GET .../dagRuns/{run_id}``, and on failure its
``taskInstances`` for the failed task ids). The run is the record: Airflow's run history keeps its conf,
logs and extra links.

Authentication is Airflow 3's: ``POST /auth/token`` with the user's name and password answers a JWT (the
simple auth manager and FAB both offer it), sent as a bearer token. The token is kept per process and
fetched again once when Airflow answers 401 (expired). Plain ``requests``: nothing of Airflow is imported.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from sentiflow import names
from sentiflow.settings.server import ServerSettings

#: Airflow's final run states; ``queued`` and ``running`` are not final.
FINAL_STATES = ("success", "failed")
#: Task instance states that failed the run.
FAILED_TASK_STATES = ("failed", "upstream_failed")
WAIT_POLL_S = 2.0
ENV = "SENTIFLOW_SERVER_"


class AirflowNotConfiguredError(RuntimeError):
    """A setting ``POST /deploy`` needs is unset; the message names it (a 503)."""


class AirflowUnavailableError(RuntimeError):
    """Airflow could not be reached, refused the server's credentials, or does not know the release DAG
    (a 503 naming what to fix)."""


class ReleaseRefusedError(RuntimeError):
    """Airflow refused the run's conf (a 422 with Airflow's reason)."""


class ReleaseRunNotFoundError(LookupError):
    """No run of the release DAG with that id (a 404)."""


@dataclass
class ReleaseRun:
    """One run of the release DAG as ``POST /deploy`` and ``/deploy/status`` report it."""

    dag_run_id: str
    state: str
    airflow_url: str
    dag_id: str = names.RELEASE_DAG
    version: str | None = None
    requested_by: str | None = None
    failed_tasks: list[str] = field(default_factory=list)
    #: The gate's reason once it decided (its decision XCom): why the version was released or refused.
    gate_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def release_conf(
    version: str, requested_by: str, force_promote: bool = False, force_reason: str | None = None
) -> dict[str, Any]:
    """The release DAG's trigger conf, keyed by the names it reads (``sentiflow.names``)."""
    conf: dict[str, Any] = {
        names.RELEASE_VERSION: str(version),
        names.RELEASE_REQUESTED_BY: requested_by,
        names.FORCE_PROMOTE: bool(force_promote),
    }
    if force_reason is not None:
        conf[names.FORCE_REASON] = force_reason
    return conf


class ReleaseRuns:
    """Trigger, read and wait for runs of the release DAG, as the Airflow user the settings name."""

    def __init__(self, settings: ServerSettings, dag_id: str = names.RELEASE_DAG) -> None:
        self.settings = settings
        self.dag_id = dag_id
        self._token: str | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()

    # --- configuration ---------------------------------------------------------------------------------
    def missing(self) -> list[str]:
        """The settings ``POST /deploy`` needs and lacks, as environment variables."""
        s = self.settings
        wanted = {
            f"{ENV}AIRFLOW_URL": s.airflow_url,
            f"{ENV}AIRFLOW_USERNAME": s.airflow_username,
            f"{ENV}AIRFLOW_PASSWORD": s.airflow_password.get_secret_value() if s.airflow_password else None,
        }
        return [env for env, value in wanted.items() if not (value or "").strip()]

    @property
    def base_url(self) -> str:
        missing = self.missing()
        if missing:
            raise AirflowNotConfiguredError(
                f"manual releases run in Airflow and this server has no {' / '.join(missing)}: set "
                f"{'them' if len(missing) > 1 else 'it'} to trigger the {self.dag_id} DAG, or trigger it "
                "in Airflow's UI."
            )
        return str(self.settings.airflow_url).rstrip("/")

    def run_url(self, run_id: str) -> str:
        """The run's page in Airflow's UI (Airflow 3: ``/dags/<dag>/runs/<run>``)."""
        return f"{self.base_url}/dags/{quote(self.dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    # --- HTTP ------------------------------------------------------------------------------------------
    def _login(self) -> str:
        url = f"{self.base_url}/auth/token"
        password = self.settings.airflow_password
        body = {
            "username": self.settings.airflow_username,
            "password": password.get_secret_value() if password else "",
        }
        try:
            response = self._session.post(url, json=body, timeout=self.settings.airflow_timeout_s)
        except requests.RequestException as exc:
            raise AirflowUnavailableError(f"Airflow at {self.base_url} is unreachable: {exc}") from exc
        if response.status_code not in (200, 201):
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} refused the login of {self.settings.airflow_username!r} "
                f"({response.status_code}): check {ENV}AIRFLOW_USERNAME / {ENV}AIRFLOW_PASSWORD"
            )
        try:
            return str(response.json()["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} answered POST /auth/token without an access_token: is "
                f"{ENV}AIRFLOW_URL its API server?"
            ) from exc

    def _token_for_request(self, renew: bool) -> str:
        with self._lock:
            if renew or self._token is None:
                self._token = self._login()
            return self._token

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}/api/v2{path}"
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self._token_for_request(renew=attempt == 1)}"}
            try:
                response = self._session.request(
                    method, url, headers=headers, timeout=self.settings.airflow_timeout_s, **kwargs
                )
            except requests.RequestException as exc:
                raise AirflowUnavailableError(f"Airflow at {self.base_url} is unreachable: {exc}") from exc
            if response.status_code != 401:
                break
        if response.status_code in (401, 403):
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} does not let {self.settings.airflow_username!r} {method} "
                f"{path} ({response.status_code}): grant that user the release DAG's runs"
            )
        if response.status_code >= 500:
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} failed on {method} {path} ({response.status_code}): "
                f"{_detail(response)}"
            )
        return response

    # --- runs ------------------------------------------------------------------------------------------
    def trigger(self, conf: dict[str, Any]) -> ReleaseRun:
        """A new run of the release DAG with ``conf`` (``release_conf``); Airflow queues it."""
        path = f"/dags/{quote(self.dag_id, safe='')}/dagRuns"
        response = self._request("POST", path, json={"logical_date": None, "conf": conf})
        if response.status_code == 404:
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} has no DAG {self.dag_id!r}: {_detail(response)}"
            )
        if response.status_code in (400, 409, 422):
            raise ReleaseRefusedError(f"Airflow refused the release run: {_detail(response)}")
        if response.status_code not in (200, 201):
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} answered {response.status_code} to the trigger: "
                f"{_detail(response)}"
            )
        return self._run(response.json())

    def get(self, run_id: str) -> ReleaseRun:
        """The run as Airflow has it now, with the failed task ids once it failed."""
        path = f"/dags/{quote(self.dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        response = self._request("GET", path)
        if response.status_code == 404:
            raise ReleaseRunNotFoundError(f"no run {run_id!r} of DAG {self.dag_id!r} in Airflow")
        if response.status_code != 200:
            raise AirflowUnavailableError(
                f"Airflow at {self.base_url} answered {response.status_code} for run {run_id!r}: "
                f"{_detail(response)}"
            )
        run = self._run(response.json())
        if run.state == "failed":
            run.failed_tasks = self.failed_tasks(run_id)
        if run.final:
            run.gate_reason = self.gate_reason(run_id)
        return run

    def gate_reason(self, run_id: str) -> str | None:
        """The gate's decision's ``reason`` (None before the gate decided, or when Airflow has none)."""
        path = (
            f"/dags/{quote(self.dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
            f"{quote(names.GATE_TASK, safe='')}/xcomEntries/{quote(names.GATE_DECISION_KEY, safe='')}"
        )
        response = self._request("GET", path)
        if response.status_code != 200:
            return None
        value = response.json().get("value")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        reason = value.get("reason") if isinstance(value, dict) else None
        return str(reason) if reason else None

    def failed_tasks(self, run_id: str) -> list[str]:
        path = f"/dags/{quote(self.dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        response = self._request("GET", path)
        if response.status_code != 200:
            return []
        instances = response.json().get("task_instances") or []
        failed = {str(ti["task_id"]) for ti in instances if ti.get("state") in FAILED_TASK_STATES}
        return sorted(failed)

    def wait(self, run_id: str, timeout_s: float, poll_s: float = WAIT_POLL_S) -> ReleaseRun:
        """Read the run until it is final or ``timeout_s`` passed; the last reading either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.get(run_id)
            if run.final or time.monotonic() >= deadline:
                return run
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    def _run(self, body: dict[str, Any]) -> ReleaseRun:
        conf = body.get("conf") or {}
        run_id = str(body["dag_run_id"])
        return ReleaseRun(
            dag_run_id=run_id,
            dag_id=str(body.get("dag_id") or self.dag_id),
            state=str(body.get("state") or "queued"),
            airflow_url=self.run_url(run_id),
            version=None if conf.get(names.RELEASE_VERSION) is None else str(conf[names.RELEASE_VERSION]),
            requested_by=conf.get(names.RELEASE_REQUESTED_BY),
        )


def _detail(response: requests.Response) -> str:
    """Airflow's own reason (FastAPI's ``detail``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:500]
