"""The README's main command: bring up the embedded local stack and run the pipeline's data steps on IMDb.

Uses the offline copies in ../shared when the Hugging Face Hub is unreachable. (The DAG issue replaces this
with a full ``sentiment_pipeline`` run.)
"""

from __future__ import annotations

import json
import os
import sys
import time

from sentiflow import localstack
from sentiflow.localstack import REPO_ROOT, StackSettings

SHARED = REPO_ROOT.parent / "shared"
OFFLINE_IMDB = SHARED / "data" / "imdb"
OFFLINE_MODEL = SHARED / "models" / "all-MiniLM-L6-v2"


def offline_dataset() -> str:
    """The dataset source to use: the Hub name when reachable, else the offline IMDb copy."""
    from sentiflow.config import PipelineDefaults

    default = PipelineDefaults().dataset
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    if offline and (OFFLINE_IMDB / "train.parquet").exists():
        return str(OFFLINE_IMDB)
    return default


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def main() -> int:
    started = time.monotonic()
    stack = StackSettings()
    localstack.up(stack, ["s3", "mlflow"], with_airflow=False)
    os.environ.update(localstack.client_env(stack))

    from sentiflow.data.clean import clean_snapshot
    from sentiflow.data.collect import collect
    from sentiflow.data.snapshot import read_manifest
    from sentiflow.storage import ObjectStore

    store = ObjectStore()
    source = offline_dataset()
    run_id = time.strftime("demo_%Y%m%dT%H%M%S")
    print(f"collecting {source} (run {run_id}) ...")
    raw_uri = collect(source, run_id=run_id, store=store)
    print(f"cleaning {raw_uri} ...")
    clean_uri = clean_snapshot(raw_uri, store=store)
    manifest = read_manifest(store, clean_uri)
    print(json.dumps({"manifest_uri": clean_uri, **manifest.model_dump(mode="json")}, indent=2))
    print(f"\nraw snapshot:   {raw_uri}\nclean snapshot: {clean_uri}")
    print(f"done in {time.monotonic() - started:.0f}s; stop the stack with `make down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
