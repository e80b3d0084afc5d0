"""``sentiflow`` command line: the pipeline's data steps as commands, for scripts and debugging."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from sentiflow.names import DEFAULT_SEED
from sentiflow.settings.components import PipelineDefaults

if TYPE_CHECKING:
    from sentiflow.storage import ObjectStore


def _print_manifest(store: ObjectStore, manifest_uri: str) -> None:
    from sentiflow.data.snapshot import read_manifest

    manifest = read_manifest(store, manifest_uri)
    print(json.dumps({"manifest_uri": manifest_uri, **manifest.model_dump(mode="json")}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sentiflow", description="sentiflow data steps")
    sub = parser.add_subparsers(dest="command", required=True)

    collect = sub.add_parser("collect", help="collect a labelled text dataset into an S3 raw snapshot")
    collect.add_argument(
        "--source", default=None, help="Hub name, local path or s3:// URI (default: settings)"
    )
    collect.add_argument("--dataset-config", default=None, help="Hugging Face dataset config/subset")
    collect.add_argument("--run-id", required=True, help="run-scoped prefix for the snapshot")
    collect.add_argument("--text-column", default=None)
    collect.add_argument("--label-column", default=None)
    collect.add_argument("--sample-size", type=int, default=None, help="cap on train rows (stratified)")
    collect.add_argument("--eval-sample-size", type=int, default=None, help="cap on validation/test rows")
    collect.add_argument("--seed", type=int, default=DEFAULT_SEED)

    clean = sub.add_parser("clean", help="clean a raw snapshot into a clean snapshot")
    clean.add_argument("--manifest-uri", required=True, help="the raw snapshot's manifest URI")
    clean.add_argument("--run-id", default=None)

    show = sub.add_parser("manifest", help="print a snapshot's manifest")
    show.add_argument("manifest_uri")

    args = parser.parse_args(argv)
    from sentiflow.data.clean import CleanError
    from sentiflow.data.collect import CollectError
    from sentiflow.data.snapshot import SnapshotError
    from sentiflow.storage import ObjectStore, StorageError

    store = ObjectStore()
    try:
        if args.command == "collect":
            from sentiflow.data.collect import collect as run_collect

            uri = run_collect(
                args.source or PipelineDefaults().dataset,
                run_id=args.run_id,
                dataset_config=args.dataset_config,
                text_column=args.text_column,
                label_column=args.label_column,
                sample_size=args.sample_size,
                eval_sample_size=args.eval_sample_size,
                seed=args.seed,
                store=store,
            )
        elif args.command == "clean":
            from sentiflow.data.clean import clean_snapshot

            uri = clean_snapshot(args.manifest_uri, run_id=args.run_id, store=store)
        else:
            uri = args.manifest_uri
        _print_manifest(store, uri)
    except (CollectError, CleanError, SnapshotError, StorageError, FileNotFoundError) as exc:
        print(f"sentiflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
