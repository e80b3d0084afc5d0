"""Log a pyfunc model whose uploaded files are signed: ``Model.log``'s steps, signing between save and upload.

``mlflow.pyfunc.log_model`` saves into a temporary folder of its own and uploads it in the same call, so there
is no point at which the pipeline could sign exactly the files that are uploaded
(``sentiflow.security.signing`` says
why signing a re-download is not the same). This module does the steps of ``Model.log`` that matter here with
MLflow's public client API: create the logged model in the active run, ``mlflow.pyfunc.save_model`` into our
folder with the logged model's id in ``MLmodel``, sign the folder, upload exactly it, mark it READY and
register a version from ``models:/<model_id>``. Left out of ``Model.log``: Databricks/Unity Catalog extras,
prompts, environment-variable detection and the serving-input validation (``save_model`` still writes the
input example and signature).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sentiflow.security.signing import sign_folder

log = logging.getLogger(__name__)


def log_signed_pyfunc(
    *,
    private_key: str | Path,
    name: str = "model",
    registered_model_name: str | None = None,
    **save_kwargs: Any,
) -> Any:
    """Log ``save_kwargs`` (``mlflow.pyfunc.save_model``'s arguments) as a signed model of the active run.

    Returns MLflow's ``ModelInfo`` like ``mlflow.pyfunc.log_model`` (``registered_model_version`` set when
    ``registered_model_name`` is given); the time signing took is in the log.
    """
    import mlflow
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_signed_pyfunc needs an active MLflow run")
    client = mlflow.MlflowClient()
    run_id = run.info.run_id
    logged = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params={k: str(v) for k, v in client.get_run(run_id).data.params.items()},
    )
    client.log_outputs(run_id=run_id, models=[LoggedModelOutput(logged.model_id, step=0)])
    mlflow_model = Model(
        artifact_path=logged.artifact_location,
        model_uuid=logged.model_id,
        run_id=run_id,
        model_id=logged.model_id,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model"
            mlflow.pyfunc.save_model(path=str(local), mlflow_model=mlflow_model, **save_kwargs)
            for pycache in local.rglob("__pycache__"):  # save_model may import the model once
                shutil.rmtree(pycache, ignore_errors=True)
            started = time.perf_counter()
            sign_folder(local, private_key)
            sign_ms = (time.perf_counter() - started) * 1000
            client.log_model_artifacts(logged.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    info = mlflow_model.get_model_info(client.get_logged_model(logged.model_id))
    if registered_model_name is not None:
        version = mlflow.register_model(f"models:/{logged.model_id}", registered_model_name)
        info.registered_model_version = version.version
    log.info("logged signed model %s (signing took %.0f ms)", logged.model_id, sign_ms)
    return info
