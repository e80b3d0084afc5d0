"""``python -m sentiflow.train`` (and ``sentiflow-train``): the same command locally and in the GPU pod."""

from sentiflow.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
