"""``python -m sentiflow.train`` (and ``sentiflow-train``): the same command locally and in the GPU pod."""

from sentiflow.security.credentials_check import check_component
from sentiflow.train.cli import main

if __name__ == "__main__":
    check_component("trainer")  # SENTIFLOW_ENV=production: no placeholder credentials, a signing key
    raise SystemExit(main())
