"""Offline machines: detect an unreachable Hugging Face Hub and point the defaults at the local copies.

One detection for ``make demo`` (DAG run conf) and ``make airflow`` (environment of the Airflow processes,
so the trigger form's defaults and a scheduled run use the copies too). The copies live beside the
repository in ``../shared`` (README, "Offline machines").
"""

from __future__ import annotations

import os
import socket

from sentiflow.localstack.stack import REPO_ROOT
from sentiflow.settings.components import PipelineDefaults

SHARED = REPO_ROOT.parent / "shared"
OFFLINE_IMDB = SHARED / "data" / "imdb"
OFFLINE_MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
HUB_HOST = "huggingface.co"
#: Env vars that stop datasets/transformers from trying the Hub (and waiting on its timeouts).
HF_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def is_offline() -> bool:
    """``HF_HUB_OFFLINE=1`` says so, or the Hub does not answer within a few seconds."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return True
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3.0).close()
    except OSError:
        return True
    return False


def offline_overrides(offline: bool | None = None) -> dict[str, str]:
    """DAG params: dataset and model → the offline copies when offline (and present), else nothing."""
    if not (is_offline() if offline is None else offline):
        return {}
    overrides = {}
    if (OFFLINE_IMDB / "train.parquet").exists():
        overrides["dataset"] = str(OFFLINE_IMDB)
    if (OFFLINE_MODEL / "config.json").exists():
        overrides["model_name"] = str(OFFLINE_MODEL)
    return overrides


def offline_env(offline: bool | None = None) -> dict[str, str]:
    """The same choice as environment variables: ``SENTIFLOW_DEFAULT_*`` (the DAG params' defaults) and
    the Hugging Face offline switches. Empty when the Hub answers."""
    overrides = offline_overrides(offline)
    if not overrides:
        return {}
    defaults = {f"{PipelineDefaults.model_config['env_prefix']}{k}".upper(): v for k, v in overrides.items()}
    return {**dict.fromkeys(HF_OFFLINE_VARS, "1"), **defaults}
