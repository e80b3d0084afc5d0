"""The Airflow connections the DAGs use, built from the library's own settings.

``airflow-init`` runs ``python connections.py > conns.json && airflow connections import --overwrite
conns.json``, so the connections in the metadata DB always agree with the ``SENTIFLOW_*`` settings that every
other service reads: one place to change an endpoint or a secret (``.env``), no second copy to drift.
The shapes match ``sentiflow.localstack.stack.client_env`` (the local stack's env-var connections).
"""

from __future__ import annotations

import json
import sys

from sentiflow.settings.components import MLflowSettings, S3Settings
from sentiflow.settings.server import ServerSettings

S3_CONN_ID = "sentiflow_s3"
MLFLOW_CONN_ID = "sentiflow_mlflow"
MODEL_SERVER_CONN_ID = "sentiflow_model_server"


def build_connections() -> dict[str, dict[str, str]]:
    """Connection id -> the JSON form ``airflow connections import`` reads (``extra`` as a JSON string)."""
    s3 = S3Settings()
    mlflow = MLflowSettings()
    server = ServerSettings()
    s3_extra: dict[str, str] = {"region_name": s3.region}
    if s3.endpoint_url:
        s3_extra["endpoint_url"] = s3.endpoint_url
    model_server: dict[str, str] = {"conn_type": "http", "host": server.url}
    # the pipeline's MLflow identity (SENTIFLOW_MLFLOW_USERNAME/PASSWORD): what every task authenticates as
    mlflow_conn: dict[str, str] = {"conn_type": "http", "host": mlflow.tracking_uri}
    if mlflow.username and mlflow.password is not None:
        mlflow_conn.update(login=mlflow.username, password=mlflow.password.get_secret_value())
    # the admin token for a release's diagnostics (why a replica could not load it), the reviewer token
    # for the training export of reviewed feedback
    if server.admin_token is not None:
        model_server["password"] = server.admin_token.get_secret_value()
    if server.reviewer_token is not None:
        model_server["extra"] = json.dumps({"reviewer_token": server.reviewer_token.get_secret_value()})
    return {
        S3_CONN_ID: {
            "conn_type": "aws",
            "login": s3.access_key_id,
            "password": s3.secret_access_key.get_secret_value(),
            "extra": json.dumps(s3_extra),
        },
        MLFLOW_CONN_ID: mlflow_conn,
        MODEL_SERVER_CONN_ID: model_server,
    }


def main() -> int:
    json.dump(build_connections(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
